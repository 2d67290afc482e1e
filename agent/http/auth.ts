/**
 * PSK authentication. The key is compared in constant time (both sides hashed to equal length
 * first). Failed attempts are counted per client address; past the allowance, further failures
 * from that address get 429 until the window passes. Only failures are counted and a request that
 * carries the right key is always let through, so a legitimate client behind a noisy address is
 * never throttled.
 */
import { createHash, timingSafeEqual } from "node:crypto";

export function pskMatches(expected: string, presented: string | undefined): boolean {
  if (presented === undefined) return false;
  const a = createHash("sha256").update(expected).digest();
  const b = createHash("sha256").update(presented).digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer …` header. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  return match?.[1];
}

export class FailureThrottle {
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly allowed: number,
    private readonly windowMs: number,
    /** Bounds memory under a flood from many addresses: the oldest address is forgotten first. */
    private readonly maxAddresses = 10_000,
  ) {}

  private recent(address: string, now: number): number[] {
    const times = (this.failures.get(address) ?? []).filter((t) => now - t < this.windowMs);
    if (times.length) this.failures.set(address, times);
    else this.failures.delete(address);
    return times;
  }

  /** Seconds until this address may fail again, or 0 when it is not throttled. */
  retryAfter(address: string, now = Date.now()): number {
    const times = this.recent(address, now);
    if (times.length < this.allowed) return 0;
    return Math.max(1, Math.ceil((times[0]! + this.windowMs - now) / 1000));
  }

  recordFailure(address: string, now = Date.now()): void {
    const times = this.recent(address, now);
    times.push(now);
    this.failures.delete(address);
    this.failures.set(address, times.slice(-this.allowed));
    if (this.failures.size > this.maxAddresses) {
      const oldest = this.failures.keys().next().value;
      if (oldest !== undefined) this.failures.delete(oldest);
    }
  }
}
