#!/bin/sh
# Makes the provider plugin's tarball, as `pulumi plugin install` takes it:
#   pulumi plugin install resource espm 0.1.0 --file packages/pulumi-resource-espm-v0.1.0-linux-x64.tar.gz
# It holds the executable pulumi-resource-espm at its root and the packages it runs (the plugin,
# pulumi-espm, espm-sdk and their production dependencies) under node_modules; it needs Node 20+
# on the machine that runs Pulumi. Packs the workspaces first (`npm run pack`). Prints the path.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(node -p 'require("./plugin/package.json").version')
mkdir -p packages
npm pack --workspaces --ignore-scripts --pack-destination packages --loglevel=error >/dev/null

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
echo '{ "private": true }' > "$stage/package.json"
(cd "$stage" && npm install --omit=dev --omit=peer --no-audit --no-fund --prefer-offline --loglevel=error \
  "$root/packages/espm-sdk-$version.tgz" "$root/packages/pulumi-espm-$version.tgz" \
  "$root/packages/pulumi-resource-espm-$version.tgz" >&2)
cat > "$stage/pulumi-resource-espm" <<'SHIM'
#!/bin/sh
# espm's provider plugin, as `pulumi plugin install` unpacked it: Node runs it from here.
exec node "$(dirname "$0")/node_modules/pulumi-resource-espm/dist/plugin/main.js" "$@"
SHIM
chmod 755 "$stage/pulumi-resource-espm"
out="$root/packages/pulumi-resource-espm-v$version-linux-x64.tar.gz"
tar -czf "$out" -C "$stage" pulumi-resource-espm package.json node_modules
echo "$out"
