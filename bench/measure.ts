/** Timing helpers the benchmarks share. */

/** Runs `work` on each item, `concurrency` at a time. */
export async function pool<T>(items: T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

/** How long `work` took, in ms. */
export async function timed(work: () => Promise<void>): Promise<number> {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `total` calls of `call`, `concurrency` at a time: each call's latency in ms, and the whole run's. */
export async function latencies(total: number, concurrency: number, call: (i: number) => Promise<void>) {
  const each: number[] = [];
  const wall = await timed(() =>
    pool(
      Array.from({ length: total }, (_, i) => i),
      concurrency,
      async (i) => void each.push(await timed(() => call(i))),
    ),
  );
  return { wall, p50: percentile(each, 50), p99: percentile(each, 99) };
}
