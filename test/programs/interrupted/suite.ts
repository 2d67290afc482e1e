/**
 * A suite that a test interrupts (test/interrupt.test.ts): it starts a world (Puppet Server and
 * espm, under TMPDIR), says so in ESPM_READY_FILE, and waits for the Ctrl-C.
 */
import { writeFileSync } from "node:fs";
import { World } from "../../helpers/world";

describe("a suite interrupted mid-run", function () {
  this.timeout(0);
  it("starts Puppet Server and espm, then waits", async () => {
    const world = await World.start();
    writeFileSync(process.env.ESPM_READY_FILE!, `${world.lab.dir}\n`);
    await new Promise(() => undefined);
  });
});
