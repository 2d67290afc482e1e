#!/bin/sh
# Generates espm's Python, Go and Node.js SDKs from plugin/schema.json into OUTDIR/{python,go,nodejs}
# with Pulumi's own code generators (scripts/pulumi-cli/sdkgen, built here with the Go packages of
# the CLI's release: `pulumi package gen-sdk` would need language plugins this machine cannot have).
# The .NET generator lives outside pulumi/pkg (in pulumi-dotnet) and is not built. Usage:
#   scripts/gen-sdks.sh OUTDIR
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: scripts/gen-sdks.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
(cd "$root/scripts/pulumi-cli" && go build -trimpath -o "$out/sdkgen" ./sdkgen)
for language in python go nodejs; do
  rm -rf "${out:?}/$language"
  "$out/sdkgen" "$root/plugin/schema.json" "$language" "$out/$language" >/dev/null
done
rm -f "$out/sdkgen"
echo "$out"
