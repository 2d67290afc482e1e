#!/bin/sh
# The test command (`npm test`, and what .ci/run runs). From a fresh clone, as root, with nothing but
# Node and npm: installs Debian's puppetserver, puppet-agent, PuppetDB, PostgreSQL, the compiler and
# moto (scripts/install-deps.sh), then the npm packages if missing, builds the Pulumi CLI and its YAML language
# host (scripts/build-pulumi.sh, scripts/build-pulumi-yaml.sh; cached), starts moto's EC2 server on a loopback port, builds the TypeScript and runs mocha.
# Arguments go to mocha.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "$(id -u)" != 0 ]; then
  echo "npm test: run it as root: it installs Debian packages, runs Puppet Server and puppet agent, and uses unshare" >&2
  exit 1
fi
# The system packages first: npm ci compiles better-sqlite3, which needs the compiler they bring.
scripts/install-deps.sh
[ -x node_modules/.bin/tsc ] || npm ci --no-audit --no-fund

ESPM_PULUMI_BIN=$(scripts/build-pulumi.sh)
ESPM_PULUMI_YAML_BIN=$(scripts/build-pulumi-yaml.sh)
export ESPM_PULUMI_BIN ESPM_PULUMI_YAML_BIN

# moto's EC2 server, through our launcher (images that can stay pending or fail), with whichever
# Python has moto: the system's, or the virtual environment install-deps.sh made.
python=python3
python3 -c 'import moto.server' 2>/dev/null || python="${ESPM_MOTO_VENV:-/var/cache/espm-moto}/bin/python"
port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
log=$(mktemp)
"$python" test/fixtures/moto/launcher.py -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; rm -f "$log"' EXIT
ready=""
for _ in $(seq 1 150); do
  if curl -fs -o /dev/null "http://127.0.0.1:$port/moto-api/"; then ready=yes; break; fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "npm test: moto's EC2 server did not start:" >&2
  cat "$log" >&2
  exit 1
fi
# The tests reset it through /moto-api/reset; without this variable they start their own.
export ESPM_TEST_MOTO_URL="http://127.0.0.1:$port"

npm run build
node_modules/.bin/mocha "$@"
