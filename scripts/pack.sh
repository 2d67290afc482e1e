#!/bin/sh
# `npm run pack`: the two packages this repository makes, as tarballs in packages/, installable
# before (or without) publishing: pulumi-espm (the Pulumi library: provider/ and sdk/) and
# espm-agent (the agent for the Puppet server: agent/ and sdk/, with agent/package.json as its
# manifest). Both are built from the one tree by the one `tsc`. ESPM_PACK_NO_BUILD=1 skips the build.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/packages"
cd "$root"
[ "${ESPM_PACK_NO_BUILD:-}" = 1 ] || npm run build >&2
mkdir -p "$out"
rm -f "$out"/*.tgz

# --ignore-scripts: prepack would build again.
npm pack --silent --ignore-scripts --pack-destination "$out" >/dev/null

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/dist" "$stage/scripts"
cp -R dist/agent dist/sdk "$stage/dist/"
rm -f "$stage/dist/agent/package.json"
cp scripts/operator-guide.sh "$stage/scripts/"
cp agent/package.json README.md "$stage/"
(cd "$stage" && npm pack --silent --ignore-scripts --pack-destination "$out" >/dev/null)

ls "$out"/*.tgz
