#!/bin/sh
# The main job (`npm run demo`). From a fresh clone, as root, with nothing but Node and npm: installs
# the npm packages if missing, builds the TypeScript, and runs the demo (scripts/lab/demo.ts), which
# installs the system packages it needs. Arguments go to the demo (--dir, --port, --puppet-port, --no-pulumi).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -x node_modules/.bin/tsc ] || npm ci --no-audit --no-fund
npm run build
exec node dist/scripts/lab/demo.js "$@"
