#!/bin/sh
# The main job (`npm run demo`). From a fresh clone, as root, with nothing but Node and npm: installs
# the system packages (scripts/install-deps.sh: Puppet, moto, and the compiler npm ci needs for
# better-sqlite3), then the npm packages if missing, builds the TypeScript, and runs the demo
# (scripts/lab/demo.ts). Arguments go to the demo (--dir, --port, --puppet-port, --provider-key, --no-pulumi).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Before anything is installed or built (the first build takes about 20 s): a taken port, or a demo
# already running in the same directory, is said at once. The demo names the holding process later.
node -e '
const { parseArgs } = require("node:util");
const { existsSync, readFileSync } = require("node:fs");
const options = { dir: { type: "string", default: "/var/tmp/espm-demo" }, port: { type: "string", default: "8443" }, "puppet-port": { type: "string", default: "8140" } };
const { values } = parseArgs({ args: process.argv.slice(1), options, strict: false });
const pidFile = `${values.dir}/demo.pid`;
const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8")) : 0;
if (pid > 0 && existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("demo")) {
  console.error(`demo: a demo is running in ${values.dir} (pid ${pid}); stop it with Ctrl-C in its terminal, or give this one another --dir, --port and --puppet-port`);
  process.exit(1);
}
const net = require("node:net");
for (const [flag, port] of [["--port", values.port], ["--puppet-port", values["puppet-port"]]]) {
  const server = net.createServer().once("error", () => {
    console.error(`demo: port ${port} is taken (ss -ltnp "sport = :${port}" shows by what); stop it, or choose another with ${flag}`);
    process.exit(1);
  });
  server.listen(Number(port), "127.0.0.1", () => server.close());
}
' -- "$@"
scripts/install-deps.sh
[ -x node_modules/.bin/tsc ] || npm ci --no-audit --no-fund
npm run build
exec node dist/scripts/lab/demo.js "$@"
