/**
 * Benchmark (not a test): N nodes registered and certified through espm, C at a time, against a
 * local Puppet Server, beside the same N certificates made by `puppetserver ca generate` in the same
 * run. Prints both times and their ratio.
 *
 *   npm run bench [-- --count 100 --concurrency 16]      (root; starts its own Puppet Server)
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs, promisify } from "node:util";
import { EspmClient } from "../sdk/client";
import { createCsr, generateRsaKeyPair } from "../sdk/x509";
import { startPuppetServer } from "../scripts/lab/puppetserver";
import { EspmProcess, freePort, puppetServerArgs, setupEspm } from "../scripts/lab/espm";

const run = promisify(execFile);

async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { count: { type: "string", default: "100" }, concurrency: { type: "string", default: "16" } },
  });
  const count = Number(values.count);
  const concurrency = Number(values.concurrency);
  const dir = mkdtempSync(join(tmpdir(), "espm-bench-"));
  const lab = await startPuppetServer({ dir: join(dir, "puppetserver"), port: await freePort() });
  const espmDir = join(dir, "espm");
  mkdirSync(espmDir);
  const espm = await EspmProcess.start(await setupEspm([...puppetServerArgs(lab)], "groups: {}\n", espmDir));
  const client = new EspmClient({ url: espm.url, psk: espm.setup.psk, certificate: espm.setup.certificate });
  try {
    const names = Array.from({ length: count }, (_, i) => i);
    let started = process.hrtime.bigint();
    await pool(names, concurrency, async (i) => {
      const name = `bench-${i}.example.test`;
      await client.registerNode({ name, classes: { espm_demo: {} } });
      const { privateKeyPem } = generateRsaKeyPair(2048);
      await client.signCertificate(name, createCsr(name, privateKeyPem));
    });
    const espmMs = Number(process.hrtime.bigint() - started) / 1e6;

    started = process.hrtime.bigint();
    await pool(names, concurrency, async (i) => {
      await run("puppetserver", ["ca", "generate", "--certname", `cli-${i}.bench.test`, "--config", lab.confFile], {
        timeout: 120_000,
      });
    });
    const cliMs = Number(process.hrtime.bigint() - started) / 1e6;

    console.log(`nodes: ${count}, concurrency: ${concurrency}`);
    console.log(
      `espm (register + RSA-2048 key + CSR + sign): ${(espmMs / 1000).toFixed(1)} s, ${(espmMs / count).toFixed(0)} ms/node`,
    );
    console.log(
      `puppetserver ca generate (baseline):        ${(cliMs / 1000).toFixed(1)} s, ${(cliMs / count).toFixed(0)} ms/node`,
    );
    console.log(`ratio baseline/espm: ${(cliMs / espmMs).toFixed(1)}x`);
  } finally {
    await client.close();
    await espm.stop();
    await lab.stop();
    rmSync(resolve(dir), { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
