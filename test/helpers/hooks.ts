/** Root hooks (loaded by .mocharc.json): stop what suites shared, and fail loudly on lost rejections. */
import { stopSharedMoto } from "./moto";
import { stopSharedWorld } from "./world";

// Pulumi reports a provider it cannot serialize only as an unhandled rejection; without this,
// outputs never resolve and a test would time out without saying why.
process.on("unhandledRejection", (reason) => {
  throw reason;
});

export const mochaHooks = {
  async afterAll(this: Mocha.Context) {
    this.timeout(60_000);
    await Promise.all([stopSharedWorld(), stopSharedMoto()]);
  },
};
