#!/bin/sh
# A Python virtual environment with Pulumi's Python SDK at the release of node_modules/@pulumi/pulumi
# (from PyPI) and what generated SDKs import, for Python programs run through the Automation API.
# Cached outside the repository, keyed by version (ESPM_PULUMI_CACHE, default /var/cache/espm-pulumi);
# prints its python.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(node -p 'require(process.argv[1]).version' "$root/node_modules/@pulumi/pulumi/package.json")
venv="${ESPM_PULUMI_CACHE:-/var/cache/espm-pulumi}/python-v$version"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pulumi, parver, semver' 2>/dev/null; then
  echo "python-pulumi: making $venv (pulumi==$version from PyPI)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "pulumi==$version" parver semver >&2
fi
echo "$venv/bin/python"
