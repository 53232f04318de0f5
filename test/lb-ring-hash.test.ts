import { afterEach, describe, expect, it } from 'vitest';
import type { Cluster } from '../src/cluster/cluster.js';
import type { Endpoint } from '../src/cluster/endpoint.js';
import { hash32 } from '../src/cluster/hash.js';
import { hashCookie } from '../src/cluster/lb/hash-key.js';
import { clusterOf, countPicks, request, shares } from './lb-fixtures.js';

const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

/** Endpoint key each user id lands on. */
function placement(cluster: Cluster): string[] {
  return KEYS.map((key) => cluster.pick(request({ 'x-user-id': key }))!.key);
}

describe('ring_hash', () => {
  const clusters: Cluster[] = [];
  const make = (...args: Parameters<typeof clusterOf>) => {
    const cluster = clusterOf(...args);
    clusters.push(cluster);
    return cluster;
  };
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((cluster) => cluster.close()));
  });

  it('sends one key to one endpoint, the same one in a freshly built ring', () => {
    const first = make('ring_hash', [1, 1, 1, 1, 1], { header: 'x-user-id' });
    const second = make('ring_hash', [1, 1, 1, 1, 1], { header: 'x-user-id' });
    const ctx = request({ 'x-user-id': 'alice' });
    const picked = first.pick(ctx)!;
    for (let i = 0; i < 50; i++) expect(first.pick(ctx)).toBe(picked);
    expect(second.pick(ctx)!.key).toBe(picked.key);
  });

  it('matches the header name case-insensitively and spreads distinct keys evenly', () => {
    const cluster = make('ring_hash', [1, 1, 1, 1, 1], { header: 'X-User-Id' });
    const counts = cluster.endpoints.map(() => 0);
    for (const key of placement(cluster)) counts[cluster.endpoints.findIndex((e) => e.key === key)]! += 1;
    for (const share of shares(counts)) {
      expect(share).toBeGreaterThan(0.14);
      expect(share).toBeLessThan(0.26);
    }
  });

  it('gives endpoints key shares in proportion to weight (1:3)', () => {
    const cluster = make('ring_hash', [1, 3], { header: 'x-user-id' });
    const light = placement(cluster).filter((key) => key === cluster.endpoints[0]!.key).length / KEYS.length;
    expect(light).toBeGreaterThan(0.2);
    expect(light).toBeLessThan(0.3);
  });

  it('remaps about 1/N of keys, all from the removed endpoint, when one of five goes', () => {
    const five = make('ring_hash', [1, 1, 1, 1, 1], { header: 'x-user-id' });
    const four = make('ring_hash', [1, 1, 1, 1], { header: 'x-user-id' });
    const removed = five.endpoints[4]!.key;
    const before = placement(five);
    const after = placement(four);
    const moved = KEYS.filter((_, i) => before[i] !== after[i]);
    expect(moved.length / KEYS.length).toBeGreaterThan(0.1);
    expect(moved.length / KEYS.length).toBeLessThan(0.3);
    expect(KEYS.filter((_, i) => before[i] !== after[i] && before[i] !== removed)).toEqual([]);
    expect(after).not.toContain(removed);
  });

  it('walks to the next endpoint on the ring exactly as if the unavailable one were removed', () => {
    const five = make('ring_hash', [1, 1, 1, 1, 1], { header: 'x-user-id' });
    const four = make('ring_hash', [1, 1, 1, 1], { header: 'x-user-id' });
    five.endpoints[4]!.ejected = true;
    expect(placement(five)).toEqual(placement(four));
  });

  it('sends a retry to another endpoint, and to the same other one every time', () => {
    const cluster = make('ring_hash', [1, 1, 1], { header: 'x-user-id' });
    const ctx = request({ 'x-user-id': 'bob' });
    const first = cluster.pick(ctx)!;
    const retry = cluster.pick(ctx, first)!;
    expect(retry).not.toBe(first);
    for (let i = 0; i < 20; i++) expect(cluster.pick(ctx, first)).toBe(retry);
  });

  it('falls back to the excluded endpoint only when it is the last available, then to undefined', () => {
    const cluster = make('ring_hash', [1, 1], { header: 'x-user-id' });
    const ctx = request({ 'x-user-id': 'carol' });
    const first = cluster.pick(ctx)!;
    const other = cluster.endpoints.find((e) => e !== first)!;
    other.healthy = false;
    expect(cluster.pick(ctx, first)).toBe(first);
    first.ejected = true;
    expect(cluster.pick(ctx)).toBeUndefined();
    expect(cluster.pick(request())).toBeUndefined();
  });

  it('hashes on a cookie wherever it sits in the Cookie header, quoted or not', () => {
    const cluster = make('ring_hash', [1, 1, 1, 1, 1], { cookie: 'session' });
    const picked = cluster.pick(request({ cookie: 'session=abc' }))!;
    expect(cluster.pick(request({ cookie: 'theme=dark; session=abc; lang=en' }))).toBe(picked);
    expect(cluster.pick(request({ cookie: 'session="abc"' }))).toBe(picked);
    const seen = new Set<Endpoint>();
    for (let i = 0; i < 200; i++) seen.add(cluster.pick(request({ cookie: `session=s${i}` }))!);
    expect(seen.size).toBe(5);
  });

  it('hashes on the client IP', () => {
    const cluster = make('ring_hash', [1, 1, 1, 1], { clientIp: true });
    const picked = cluster.pick(request({}, '192.0.2.7'))!;
    for (let i = 0; i < 20; i++) expect(cluster.pick(request({ 'x-user-id': `${i}` }, '192.0.2.7'))).toBe(picked);
    const seen = new Set<Endpoint>();
    for (let i = 0; i < 200; i++) seen.add(cluster.pick(request({}, `10.0.${i >> 8}.${i & 255}`))!);
    expect(seen.size).toBe(4);
  });

  it('falls back to random when the key is missing or hashOn is absent', () => {
    const withKey = make('ring_hash', [1, 1, 1], { header: 'x-user-id' });
    for (const share of shares(countPicks(withKey, 3000, request({ cookie: 'x-user-id=1' })))) {
      expect(share).toBeGreaterThan(0.25);
    }
    const withoutHashOn = make('ring_hash', [1, 3]);
    const [light] = shares(countPicks(withoutHashOn, 4000, request({ 'x-user-id': 'same' })));
    expect(light).toBeGreaterThan(0.2);
    expect(light).toBeLessThan(0.3);
  });
});

describe('hashCookie', () => {
  it('hashes only the exact cookie name', () => {
    expect(hashCookie('sessionid=1; session=abc', 'session')).toBe(hash32('abc'));
    expect(hashCookie(' session = abc ;x=1', 'session')).toBe(hash32('abc'));
    expect(hashCookie('sessionid=1', 'session')).toBe(-1);
    expect(hashCookie('Session=abc', 'session')).toBe(-1);
  });

  it('treats an empty value or a bare name as missing', () => {
    expect(hashCookie('session=', 'session')).toBe(-1);
    expect(hashCookie('session=""', 'session')).toBe(-1);
    expect(hashCookie('session; other=1', 'session')).toBe(-1);
  });
});

describe('hash32', () => {
  it('hashes a substring in place exactly as the sliced string', () => {
    expect(hash32('[abc]', 1, 4)).toBe(hash32('abc'));
    expect(hash32('abc')).not.toBe(hash32('abd'));
    expect(hash32('')).toBeGreaterThanOrEqual(0);
    expect(hash32('x')).toBeLessThan(2 ** 32);
  });
});
