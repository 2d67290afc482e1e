/**
 * The one cache of answers from another server, used by the agent (the CA's documents, Puppet
 * Server's classes, its backends' health) and the provider (espm's groups and classes at preview):
 *
 * - one fetch per key in flight, however many callers arrive; they all await it;
 * - an answer is fresh for `ttlMs`; after that the next caller fetches again, passing the previous
 *   answer so the fetch can revalidate it (an ETag, a 304) and hand it back;
 * - `serveStale`: a caller gets the expired answer at once while one refresh runs behind it;
 * - a failed fetch is never kept: its callers get the error, the previous answer (if any) stays,
 *   and the next caller asks again.
 *
 * Small on purpose (no eviction: the keys are a handful of environments, documents and URLs).
 */
export interface Cached<V> {
  value: V;
  /** What the fetch may revalidate with next time (an ETag). */
  etag?: string;
}

export interface CacheOptions {
  ttlMs: number;
  /** Answer an expired value at once while one refresh runs behind it. */
  serveStale?: boolean;
}

/** Fetches a key's answer; `previous` is the answer kept so far, to revalidate (hand it back when unchanged). */
export type Fetch<K, V> = (key: K, previous: Cached<V> | undefined) => Promise<Cached<V>>;

interface Slot<V> {
  answer?: Cached<V>;
  at: number;
  refresh?: Promise<Cached<V>>;
}

export class AnswerCache<K, V> {
  private readonly slots = new Map<K, Slot<V>>();

  /** `fetch` may be left out when every caller passes its own to get (one that carries its credentials). */
  constructor(
    private readonly options: CacheOptions,
    private readonly fetch?: Fetch<K, V>,
  ) {}

  async get(key: K, fetch: Fetch<K, V> | undefined = this.fetch): Promise<V> {
    if (!fetch) throw new Error("AnswerCache.get: no fetch for this cache");
    let slot = this.slots.get(key);
    if (slot?.answer && Date.now() - slot.at < this.options.ttlMs) return slot.answer.value;
    if (!slot) this.slots.set(key, (slot = { at: 0 }));
    const refresh = slot.refresh ?? this.refresh(key, slot, fetch);
    if (slot.answer && this.options.serveStale) {
      refresh.catch(() => undefined); // the stale answer stays; the next caller tries again
      return slot.answer.value;
    }
    return (await refresh).value;
  }

  /** Drops what is kept for the key: the next caller fetches. */
  forget(key: K): void {
    this.slots.delete(key);
  }

  /** How many keys hold an answer. */
  get size(): number {
    return [...this.slots.values()].filter((slot) => slot.answer).length;
  }

  private refresh(key: K, slot: Slot<V>, fetch: Fetch<K, V>): Promise<Cached<V>> {
    const refresh = fetch(key, slot.answer).then((answer) => {
      slot.answer = answer;
      slot.at = Date.now();
      return answer;
    });
    slot.refresh = refresh;
    const done = () => {
      if (slot.refresh === refresh) slot.refresh = undefined;
    };
    refresh.then(done, done);
    return refresh;
  }
}
