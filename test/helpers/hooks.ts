/**
 * Root hooks (loaded by .mocharc.json): stop what suites shared, clean up after an interrupt, and
 * fail loudly on lost rejections.
 */
import { execFileSync } from "node:child_process";
import { cleanUpOnInterrupt } from "../../scripts/lab/interrupt";
import { stopSharedMoto } from "./moto";
import { stopSharedWorld } from "./world";

// Pulumi reports a provider it cannot serialize only as an unhandled rejection; without this,
// outputs never resolve and a test would time out without saying why.
process.on("unhandledRejection", (reason) => {
  throw reason;
});

/**
 * espm's user and group as agent/scripts/operator-guide.sh makes them, so that every suite meets the
 * installed layout: Puppet Server's user in espm's group (it reads the export, the socket and the
 * autosign secret through it), espm's user not in Puppet Server's (whose members read the CA's keys).
 */
function usersAsTheGuideMakesThem(): void {
  execFileSync("sh", [
    "-c",
    "id espm >/dev/null 2>&1 || useradd --system --user-group --shell /usr/sbin/nologin espm; " +
      "id -nG puppet | tr ' ' '\\n' | grep -qx espm || usermod -aG espm puppet; " +
      "! id -nG espm | tr ' ' '\\n' | grep -qx puppet || gpasswd -d espm puppet >/dev/null",
  ]);
}

// A Ctrl-C (or SIGTERM) mid-run stops every lab server and removes every scratch directory.
cleanUpOnInterrupt();

export const mochaHooks = {
  beforeAll() {
    usersAsTheGuideMakesThem();
  },
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await Promise.all([stopSharedWorld(), stopSharedMoto()]);
  },
};
