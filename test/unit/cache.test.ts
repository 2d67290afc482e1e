/** The one cache of other servers' answers (sdk/cache.ts), as the agent and the provider use it. */
import assert from "node:assert/strict";
import { AnswerCache, type Cached } from "espm-sdk/cache";

/** A fetch that counts its calls and answers what `next` says (a value, or an error). */
function source() {
  const calls: Array<{ key: string; previous?: Cached<string> }> = [];
  let next: () => Promise<Cached<string>> = async () => ({ value: `v${calls.length}`, etag: `e${calls.length}` });
  return {
    calls,
    answer: (f: typeof next) => (next = f),
    fetch: (key: string, previous: Cached<string> | undefined) => {
      calls.push({ key, previous });
      return next();
    },
  };
}

describe("the answer cache", () => {
  it("makes one fetch for callers that arrive together, and keeps the answer while it is fresh", async () => {
    const s = source();
    const cache = new AnswerCache<string, string>({ ttlMs: 60_000 }, s.fetch);
    assert.deepEqual(await Promise.all([cache.get("a"), cache.get("a"), cache.get("a")]), ["v1", "v1", "v1"]);
    assert.equal(await cache.get("a"), "v1");
    assert.equal(await cache.get("b"), "v2", "another key is another fetch");
    assert.equal(s.calls.length, 2);
  });

  it("revalidates an expired answer with what it kept, and keeps the answer the fetch hands back", async () => {
    const s = source();
    const cache = new AnswerCache<string, string>({ ttlMs: 0 }, s.fetch);
    assert.equal(await cache.get("a"), "v1");
    s.answer(async () => s.calls.at(-1)!.previous!); // "304": the previous answer, unchanged
    assert.equal(await cache.get("a"), "v1");
    assert.deepEqual(s.calls[1]!.previous, { value: "v1", etag: "e1" });
  });

  it("never keeps a failure: its callers get the error, the next caller asks again", async () => {
    const s = source();
    const cache = new AnswerCache<string, string>({ ttlMs: 0 }, s.fetch);
    s.answer(async () => Promise.reject(new Error("down")));
    await assert.rejects(Promise.all([cache.get("a"), cache.get("a")]), /down/);
    assert.equal(s.calls.length, 1, "one fetch for both callers");
    s.answer(async () => ({ value: "up" }));
    assert.equal(await cache.get("a"), "up");
  });

  it("with serveStale, answers the expired value at once and refreshes once behind it; a failed refresh keeps it", async () => {
    const s = source();
    const cache = new AnswerCache<string, string>({ ttlMs: 0, serveStale: true }, s.fetch);
    assert.equal(await cache.get("a"), "v1", "the first caller waits: there is nothing to serve");
    let release!: () => void;
    s.answer(() => new Promise((resolve, reject) => (release = () => reject(new Error("down")))));
    assert.deepEqual(await Promise.all([cache.get("a"), cache.get("a")]), ["v1", "v1"]);
    assert.equal(s.calls.length, 2, "one refresh behind both");
    release();
    await new Promise((r) => setImmediate(r));
    s.answer(async () => ({ value: "v3" }));
    assert.equal(await cache.get("a"), "v1", "still the old answer, while the next refresh runs");
    await new Promise((r) => setImmediate(r));
    assert.equal(await cache.get("a"), "v3");
  });

  it("forgets a key on demand, and takes a fetch per call where the caller carries its own credentials", async () => {
    const s = source();
    const cache = new AnswerCache<string, string>({ ttlMs: 60_000 });
    assert.equal(await cache.get("a", s.fetch), "v1");
    cache.forget("a");
    assert.equal(await cache.get("a", s.fetch), "v2");
    await assert.rejects(cache.get("b"), /no fetch/);
  });
});
