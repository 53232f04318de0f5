// A route's local rate limit (CONTRACT §2, §4): token buckets keyed per
// client, header value or route, refilled lazily when taken from, so an idle
// key costs no timer and no work. The buckets live in memory shared by every
// worker (src/workers/shared-state.ts): the limit holds for the tandem as a
// whole.

import { randomFillSync } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { sharedNow } from '../clock.js';
import type { RateLimitConfig } from '../config/types.js';

/** Keys tracked at once per route before idle buckets are evicted. */
export const DEFAULT_MAX_KEYS = 100_000;

/** Buckets per set: a key lives in one set, picked by its hash, and eviction looks only there. */
const WAYS = 8;

// Header: the number of sets, the ways per set, the key hash's 4 seeds; then
// one lock per set, then the buckets, each 32 bytes: the key's hash (4
// Int32s, the first never 0 in a bucket in use), tokens (Float64), and the
// time (Float64, shared clock) at which `tokens` was right, also its last use.
const HEADER = 6;
const SEEDS = 2;
const BUCKET_BYTES = 32;
const KEY_WORDS = 4;
const TOKENS = 2;
const AT = 3;

/** The layout for up to `maxKeys` keys: as many full sets as fit, so never more buckets than maxKeys. */
function shape(maxKeys: number): { sets: number; ways: number } {
  const ways = Math.max(1, Math.min(WAYS, maxKeys));
  return { sets: Math.max(1, Math.floor(maxKeys / ways)), ways };
}

function bucketsOffset(sets: number): number {
  return Math.ceil(((HEADER + sets) * 4) / 8) * 8;
}

/** A table of token buckets for up to `maxKeys` keys (only one is used by a route-keyed limit), in shared memory. */
export function allocateBuckets(maxKeys: number): SharedArrayBuffer {
  const { sets, ways } = shape(maxKeys);
  const buffer = new SharedArrayBuffer(bucketsOffset(sets) + sets * ways * BUCKET_BYTES);
  const header = new Int32Array(buffer, 0, HEADER);
  header[0] = sets;
  header[1] = ways;
  randomFillSync(header.subarray(SEEDS));
  return buffer;
}

/** A worker is gone: a set it locked (it died inside take()) is unlocked, so the others do not spin on it for ever. */
export function releaseWorkerLocks(buffer: SharedArrayBuffer, worker: number): void {
  const sets = new Int32Array(buffer, 0, HEADER)[0]!;
  const locks = new Int32Array(buffer, HEADER * 4, sets);
  for (let i = 0; i < sets; i++) Atomics.compareExchange(locks, i, worker + 1, 0);
}

/**
 * Token buckets of `burst` tokens, each starting full and refilling
 * continuously at `perSecond`, in a fixed-size hash table shared by the
 * workers. A key is stored as a 128-bit hash (keyHash), so every bucket has
 * the same size and no two keys share one in practice.
 * The table is set-associative: a key's hash picks a set of up to 8
 * buckets, and take() holds that set's lock (a compare-and-swap on an
 * Int32, spun on: it is held for a handful of reads and writes) while it
 * refills and takes, so two workers never both take the last token.
 * When a new key finds its set full, the buckets of the set that would be
 * full by now are dropped first: a full bucket is what a new one starts as,
 * so forgetting it changes nothing. Only if none is full is the least
 * recently used of the set dropped (its key then starts over with a full
 * bucket). Keys spread over the sets at random, so some sets fill before
 * the table holds maxKeys: drained buckets start being dropped a little
 * below that.
 */
export class TokenBuckets {
  private readonly perMs: number;
  private readonly sets: number;
  private readonly ways: number;
  private readonly locks: Int32Array;
  private readonly keys: Int32Array;
  private readonly values: Float64Array;
  private readonly me: number;
  private readonly seeds: Int32Array;
  /** the hash of the key being taken from: no allocation per request */
  private readonly key = new Int32Array(KEY_WORDS);

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    buffer: SharedArrayBuffer,
    worker = 0,
    private readonly now: () => number = sharedNow,
  ) {
    this.perMs = perSecond / 1000;
    const header = new Int32Array(buffer, 0, HEADER);
    this.sets = header[0]!;
    this.ways = header[1]!;
    this.locks = new Int32Array(buffer, HEADER * 4, this.sets);
    this.keys = new Int32Array(buffer, bucketsOffset(this.sets));
    this.values = new Float64Array(buffer, bucketsOffset(this.sets));
    this.me = worker + 1;
    this.seeds = header.slice(SEEDS);
  }

  /** keys with a bucket */
  get size(): number {
    let n = 0;
    for (let b = 0; b < this.sets * this.ways; b++) if (this.keys[b * 8] !== 0) n++;
    return n;
  }

  /** Takes a token from `key`'s bucket: 0 when there was one, else the whole seconds (at least 1) until there is. */
  take(key: string | undefined): number {
    keyHash(key, this.seeds, this.key);
    return this.takeHashed(this.key);
  }

  /** The hash take() stores for `key`, for a caller that takes from the same key every time. */
  hashOf(key: string | undefined): Int32Array {
    const h = new Int32Array(KEY_WORDS);
    keyHash(key, this.seeds, h);
    return h;
  }

  /** take() for a key already hashed. */
  takeHashed(h: Int32Array): number {
    const k0 = h[0]! | 1;
    const k1 = h[1]!;
    const k2 = h[2]!;
    const k3 = h[3]!;
    const set = (k1 >>> 0) % this.sets;
    const locks = this.locks;
    while (Atomics.compareExchange(locks, set, 0, this.me) !== 0);
    try {
      const now = this.now();
      const keys = this.keys;
      const first = set * this.ways;
      let b = -1;
      let free = -1;
      for (let i = first; i < first + this.ways; i++) {
        const k = i * 8;
        if (keys[k] === k0 && keys[k + 1] === k1 && keys[k + 2] === k2 && keys[k + 3] === k3) {
          b = i;
          break;
        }
        if (free < 0 && keys[k] === 0) free = i;
      }
      const v = this.values;
      if (b < 0) {
        b = free >= 0 ? free : this.evict(first, now);
        const k = b * 8;
        keys[k] = k0;
        keys[k + 1] = k1;
        keys[k + 2] = k2;
        keys[k + 3] = k3;
        v[b * 4 + TOKENS] = this.burst;
      } else {
        // max(): another thread's clock reading may trail this one's by a hair
        const elapsed = Math.max(0, now - v[b * 4 + AT]!);
        v[b * 4 + TOKENS] = Math.min(this.burst, v[b * 4 + TOKENS]! + elapsed * this.perMs);
      }
      v[b * 4 + AT] = now;
      const tokens = v[b * 4 + TOKENS]!;
      if (tokens >= 1) {
        v[b * 4 + TOKENS] = tokens - 1;
        return 0;
      }
      // The epsilon keeps float noise (1.0000000001 s) from adding a second.
      return Math.max(1, Math.ceil((1 - tokens) / this.perSecond - 1e-9));
    } finally {
      Atomics.store(locks, set, 0);
    }
  }

  /** Empties the full buckets of a full set, else its least recently used one; returns a bucket now free. */
  private evict(first: number, now: number): number {
    const keys = this.keys;
    const v = this.values;
    let freed = -1;
    let oldest = first;
    for (let i = first; i < first + this.ways; i++) {
      if (v[i * 4 + TOKENS]! + (now - v[i * 4 + AT]!) * this.perMs >= this.burst) {
        keys[i * 8] = 0;
        if (freed < 0) freed = i;
      } else if (v[i * 4 + AT]! < v[oldest * 4 + AT]!) oldest = i;
    }
    return freed >= 0 ? freed : oldest;
  }
}

/**
 * 128 bits from four multiply-xorshift lanes over the key's UTF-16 units,
 * each lane seeded from the table (random per table, the same in every
 * worker), mixed together at the end so that every bit depends on every
 * lane. Not a cryptographic hash, and it need not be: a collision only
 * makes two keys share one limit, and a client choosing its own header
 * values gets fresh buckets anyway by choosing new ones. A present key
 * starts with a unit no string has (0x10000), so no header value hashes as
 * the absent header.
 */
function keyHash(key: string | undefined, seeds: Int32Array, out: Int32Array): void {
  let a = seeds[0]!;
  let b = seeds[1]!;
  let c = seeds[2]!;
  let d = seeds[3]!;
  if (key !== undefined) {
    for (let i = -1; i < key.length; i++) {
      const u = i < 0 ? 0x10000 : key.charCodeAt(i);
      a = Math.imul(a ^ u, 0x9e3779b1);
      a ^= a >>> 15;
      b = Math.imul(b ^ u, 0x85ebca77);
      b ^= b >>> 13;
      c = Math.imul(c ^ u, 0xc2b2ae3d);
      c ^= c >>> 16;
      d = Math.imul(d ^ u, 0x27d4eb2f);
      d ^= d >>> 14;
    }
  }
  out[0] = avalanche(a ^ Math.imul(d, 0x165667b1));
  out[1] = avalanche(b ^ Math.imul(a, 0x27d4eb2f));
  out[2] = avalanche(c ^ Math.imul(b, 0x9e3779b1));
  out[3] = avalanche(d ^ Math.imul(c, 0x85ebca77));
}

/** MurmurHash3's finalizer: each input bit flips about half the output bits. */
function avalanche(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
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

/** A route's limiter over its buckets (allocateBuckets), as worker `worker` of the tandem. */
export function compileRateLimit(cfg: RateLimitConfig, buffer: SharedArrayBuffer, worker = 0, now?: () => number): RateLimiter {
  const buckets = new TokenBuckets(cfg.requestsPerSecond, cfg.burst, buffer, worker, now);
  const key = cfg.key;
  if (key === 'route') {
    const only = buckets.hashOf('');
    return { take: () => buckets.takeHashed(only) };
  }
  if (key === 'clientIp') return { take: (s) => buckets.take(s.clientIp) };
  const name = key.slice('header:'.length);
  // An absent header is one bucket shared by every request without it.
  return { take: (s) => buckets.take(headerValue(s.headers[name])) };
}

/** Keys a route's rate limit may track at once: one for a route-keyed limit. */
export function rateLimitKeys(cfg: RateLimitConfig, maxKeys = DEFAULT_MAX_KEYS): number {
  return cfg.key === 'route' ? 1 : maxKeys;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}
