#!/bin/sh
# Builds Pulumi's YAML language host (pulumi-language-yaml), which `pulumi up` of a `runtime: yaml`
# project needs, from the Go module proxy (it is on neither npm nor Debian), and prints the
# directory that holds it. A build is reused from the cache (outside the repository, keyed by
# version) when it is there: ESPM_PULUMI_CACHE, default /var/cache/espm-pulumi.
set -eu
version=v1.25.0
cache="${ESPM_PULUMI_CACHE:-/var/cache/espm-pulumi}"
bin="$cache/yaml-$version/bin"

if [ -x "$bin/pulumi-language-yaml" ]; then
  echo "build-pulumi-yaml: reusing $bin" >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/yaml-$version.lock"
if ! flock -n 9; then
  echo "build-pulumi-yaml: another build of pulumi-language-yaml $version is running; waiting for it" >&2
  flock 9
fi
if [ -x "$bin/pulumi-language-yaml" ]; then
  echo "$bin"
  exit 0
fi

if ! command -v go >/dev/null; then
  echo "build-pulumi-yaml: Pulumi's YAML language host needs Go to build, and this machine has none. Install Go from https://go.dev/dl/ and put its bin directory on PATH." >&2
  exit 1
fi

started=$(date +%s)
work="$cache/yaml-$version/bin.partial"
rm -rf "$work"
mkdir -p "$work"
echo "build-pulumi-yaml: building pulumi-language-yaml $version (a few minutes on 2 cores the first time)" >&2
# Outside any module, so go install builds the module at exactly this version with its own go.sum.
(cd "$work" && GOBIN="$work" GOFLAGS=-trimpath go install -ldflags "-s -w" \
  "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml@$version")

rm -rf "$bin"
mv "$work" "$bin"
echo "build-pulumi-yaml: built pulumi-language-yaml $version in $(( $(date +%s) - started )) s in $bin" >&2
echo "$bin"
