#!/bin/sh
# Builds the Pulumi CLI at the release matching node_modules/@pulumi/pulumi, from the Go module proxy
# (the CLI is on neither npm nor Debian), with the pulumi-resource-pulumi-nodejs shim beside it, and
# prints the directory that holds them. A build is reused from the cache (outside the repository,
# keyed by version) when it is there: ESPM_PULUMI_CACHE, default /var/cache/espm-pulumi.
#
# The Node.js language host (pulumi-language-nodejs) is not built: its Go module is not served by
# the module proxy here. espm's engine tests and demo use inline programs through the Automation
# API, whose own language server in the Node process stands in for it.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
version="v$(node -p 'require(process.argv[1]).version' "$root/node_modules/@pulumi/pulumi/package.json")"
cache="${ESPM_PULUMI_CACHE:-/var/cache/espm-pulumi}"
bin="$cache/$version/bin"

built() { [ -x "$bin/pulumi" ] && [ "$("$bin/pulumi" version 2>/dev/null)" = "$version" ] && [ -x "$bin/pulumi-resource-pulumi-nodejs" ]; }
if built; then
  echo "build-pulumi: reusing $bin" >&2
  echo "$bin"
  exit 0
fi

# One build at a time per version: a second build waits for the first (which shares its work
# directory) and then reuses what it built. The lock goes with the process, however it ends.
mkdir -p "$cache"
exec 9>"$cache/$version.lock"
if ! flock -n 9; then
  echo "build-pulumi: another build of pulumi $version is running; waiting for it" >&2
  flock 9
fi
if built; then
  echo "build-pulumi: reusing $bin (built while this one waited)" >&2
  echo "$bin"
  exit 0
fi

module="$root/scripts/pulumi-cli"
if ! grep -Eq "github.com/pulumi/pulumi/pkg/v3 $version( |\$)" "$module/go.mod"; then
  echo "build-pulumi: $module/go.mod does not require pkg/v3 $version (the @pulumi/pulumi installed); run there: go get github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@$version github.com/pulumi/pulumi/sdk/v3@$version" >&2
  exit 1
fi

# Go is the one prerequisite no registry here installs: say what is missing and where to get it.
need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$module/go.mod")
have=$(go env GOVERSION 2>/dev/null | sed 's/^go//') || have=""
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  echo "build-pulumi: the Pulumi CLI $version needs Go $need or newer to build, and this machine has ${have:-no Go}. Install Go from https://go.dev/dl/ (Debian 12's golang-go is 1.19, too old) and put its bin directory on PATH." >&2
  exit 1
fi

started=$(date +%s)
work="$cache/$version/bin.partial"
rm -rf "$work"
mkdir -p "$work"
echo "build-pulumi: building pulumi $version (several minutes on 2 cores)" >&2
# The Automation API refuses a CLI whose version it cannot parse: stamp it.
(cd "$module" && go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
  -o "$work/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)

# What Pulumi's CLI distribution puts beside it for dynamic providers: node on @pulumi/pulumi's
# cmd/dynamic-provider, found from the project directory the engine starts plugins in.
cat > "$work/pulumi-resource-pulumi-nodejs" <<'SHIM'
#!/bin/sh
entry=$(node -p 'require.resolve("@pulumi/pulumi/cmd/dynamic-provider/index.js", { paths: [process.cwd()] })') || exit 1
exec node "$entry" "$@"
SHIM
chmod 755 "$work/pulumi-resource-pulumi-nodejs"

rm -rf "$bin"
mv "$work" "$bin"
echo "build-pulumi: built pulumi $version in $(( $(date +%s) - started )) s; $(du -sh "$bin" | cut -f1) in $bin" >&2
echo "$bin"
