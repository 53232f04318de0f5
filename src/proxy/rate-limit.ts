// A route's local rate limit (CONTRACT §2, §4): token buckets keyed per
// client, header value or route, refilled lazily when taken from, so an idle
// key costs no timer and no work.

import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { now as clockNow } from '../clock.js';
import type { RateLimitConfig } from '../config/types.js';

/** Keys tracked at once per route before idle buckets are evicted. */
export const DEFAULT_MAX_KEYS = 100_000;

/** Longer keys (header values may be kilobytes) are stored as a digest, so the cap bounds memory too. */
const MAX_KEY_LENGTH = 64;

interface Bucket {
  tokens: number;
  /** clock reading (ms) at which `tokens` was right */
  at: number;
}

/**
 * Token buckets of `burst` tokens, each starting full and refilling
 * continuously at `perSecond`. A Map keeps them in least-recently-used order.
 * At `maxKeys` the buckets that would be full by now are dropped first: a
 * full bucket is what a new one starts as, so forgetting it changes nothing.
 * Only if that frees too little are the least recently used ones dropped too
 * (their keys then start over with a full bucket).
 */
export class TokenBuckets {
  private readonly buckets = new Map<string | undefined, Bucket>();
  private readonly perMs: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private readonly maxKeys = DEFAULT_MAX_KEYS,
    private readonly now: () => number = clockNow,
  ) {
    this.perMs = perSecond / 1000;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Takes a token from `key`'s bucket: 0 when there was one, else the whole seconds (at least 1) until there is. */
  take(key: string | undefined): number {
    const now = this.now();
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxKeys) this.evict(now);
      b = { tokens: this.burst, at: now };
    } else {
      this.buckets.delete(key);
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
    }
    this.buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    // The epsilon keeps float noise (1.0000000001 s) from adding a second.
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond - 1e-9));
  }

  private evict(now: number): void {
    for (const [key, b] of this.buckets) {
      if (b.tokens + (now - b.at) * this.perMs >= this.burst) this.buckets.delete(key);
    }
    // Evicting down to 90% makes the full sweep above run at most once per
    // maxKeys/10 new keys, whatever the traffic.
    const target = Math.floor(this.maxKeys * 0.9);
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= target) break;
      this.buckets.delete(key);
    }
  }
}

/** What a request offers to be keyed on (an Exchange fits). */
export interface RateLimitSubject {
  readonly clientIp: string;
  readonly headers: IncomingHttpHeaders;
}

export interface RateLimiter {
  /** 0: admitted; else the `retry-after` seconds of the 429 */
  take(subject: RateLimitSubject): number;
}

export function compileRateLimit(cfg: RateLimitConfig, maxKeys = DEFAULT_MAX_KEYS, now?: () => number): RateLimiter {
  const buckets = new TokenBuckets(cfg.requestsPerSecond, cfg.burst, maxKeys, now);
  const key = cfg.key;
  if (key === 'route') return { take: () => buckets.take('') };
  if (key === 'clientIp') return { take: (s) => buckets.take(s.clientIp) };
  const name = key.slice('header:'.length);
  // An absent header is the key `undefined`: one bucket shared by every request without it.
  return { take: (s) => buckets.take(bounded(headerValue(s.headers[name]))) };
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

function bounded(key: string | undefined): string | undefined {
  if (key === undefined || key.length <= MAX_KEY_LENGTH) return key;
  return '#' + createHash('sha256').update(key).digest('base64');
}
