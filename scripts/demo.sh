#!/bin/sh
# The main job (`npm run demo`). From a fresh clone, as root, with nothing but Node and npm: installs
# the system packages (scripts/install-deps.sh: Puppet, moto, and the compiler npm ci needs for
# better-sqlite3), then the npm packages if missing, builds the TypeScript, and runs the demo
# (scripts/lab/demo.ts). Arguments go to the demo (--dir, --port, --puppet-port, --provider-key, --no-pulumi).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/install-deps.sh
[ -x node_modules/.bin/tsc ] || npm ci --no-audit --no-fund
npm run build
exec node dist/scripts/lab/demo.js "$@"
