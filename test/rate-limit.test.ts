// Route rate limits (CONTRACT §2, §4; docs/rate-limiting.md): the token
// bucket against an injected clock, the config keys and their errors, and the
// 429 end to end over sockets.

import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import { formatConfigError } from '../src/config/errors.js';
import { allocateBuckets, TokenBuckets, compileRateLimit } from '../src/proxy/rate-limit.js';
import {
  expectTandemError,
  simpleConfig,
  startTandem,
  startUpstream,
  useCleanup,
  waitForAccessLog,
  type RunningTandem,
  type Upstream,
} from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';

/** A clock the test moves by hand, in ms. */
function manualClock(): { now: () => number; advance(ms: number): void } {
  let t = 1_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('TokenBuckets', () => {
  it('starts full: burst requests pass at once, the next is refused', () => {
    const clock = manualClock();
    const b = new TokenBuckets(10, 3, allocateBuckets(100), 0, clock.now);
    expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 0]);
    expect(b.take('a')).toBe(1);
  });

  it('refills continuously at the rate, never beyond burst', () => {
    const clock = manualClock();
    const b = new TokenBuckets(4, 2, allocateBuckets(100), 0, clock.now);
    b.take('a');
    b.take('a');
    clock.advance(125); // half a token
    expect(b.take('a')).toBe(1);
    clock.advance(125); // the refused take cost nothing: now one whole token
    expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBe(1);
    clock.advance(60_000); // a long idle time refills to burst, not beyond
    expect([b.take('a'), b.take('a'), b.take('a')]).toEqual([0, 0, 1]);
  });

  it('retry-after is the whole seconds until one token, at least 1', () => {
    const clock = manualClock();
    const slow = new TokenBuckets(0.25, 1, allocateBuckets(100), 0, clock.now); // a token every 4 s
    expect(slow.take('a')).toBe(0);
    expect(slow.take('a')).toBe(4);
    clock.advance(1_500);
    expect(slow.take('a')).toBe(3); // 2.5 s left, rounded up
    clock.advance(2_499);
    expect(slow.take('a')).toBe(1); // 1 ms left still says 1
    clock.advance(1);
    expect(slow.take('a')).toBe(0);
    const fast = new TokenBuckets(1000, 1, allocateBuckets(100), 0, clock.now);
    fast.take('a');
    expect(fast.take('a')).toBe(1); // 1 ms away, never 0
  });

  it('keeps one bucket per key', () => {
    const clock = manualClock();
    const b = new TokenBuckets(1, 1, allocateBuckets(100), 0, clock.now);
    expect(b.take('a')).toBe(0);
    expect(b.take('a')).toBe(1);
    expect(b.take('b')).toBe(0);
    expect(b.take(undefined)).toBe(0);
    expect(b.take(undefined)).toBe(1);
  });

  it('stays within maxKeys, dropping buckets that refilled (lossless) before the least recently used', () => {
    const clock = manualClock();
    const b = new TokenBuckets(1, 2, allocateBuckets(10), 0, clock.now);
    for (let i = 0; i < 10; i++) b.take(`idle${i}`);
    clock.advance(1_000); // every idle bucket is full again
    b.take('busy');
    b.take('busy'); // empty: this one carries state
    expect(b.size).toBe(1); // the sweep dropped all ten full buckets
    for (let i = 0; i < 100; i++) b.take(`new${i}`);
    expect(b.size).toBeLessThanOrEqual(10);
    // 'busy' was the least recently used one, so it went too: a fresh full bucket
    expect(b.take('busy')).toBe(0);
  });

  it('a sweep forgets only full buckets: a key still refilling stays limited', () => {
    const clock = manualClock();
    const b = new TokenBuckets(1, 1, allocateBuckets(3), 0, clock.now);
    b.take('drained');
    b.take('x');
    clock.advance(500);
    b.take('drained'); // refused, and now the most recently used
    b.take('y');
    clock.advance(600); // 'x' and 'drained' are full again, 'y' (0.6 token) is not
    b.take('z'); // at the cap: sweeps the full ones
    expect(b.size).toBe(2); // y and z
    expect(b.take('y')).toBe(1);
  });
});

describe('compileRateLimit keys', () => {
  const subject = (clientIp: string, headers: Record<string, string> = {}) => ({ clientIp, headers });

  it('clientIp: one bucket per client address', () => {
    const rl = compileRateLimit({ requestsPerSecond: 1, burst: 1, key: 'clientIp' }, allocateBuckets(100), 0, manualClock().now);
    expect(rl.take(subject('10.0.0.1'))).toBe(0);
    expect(rl.take(subject('10.0.0.1'))).toBe(1);
    expect(rl.take(subject('10.0.0.2'))).toBe(0);
  });

  it('header: one bucket per value, one shared by every request without it; long values are digested', () => {
    const rl = compileRateLimit({ requestsPerSecond: 1, burst: 1, key: 'header:x-api-key' }, allocateBuckets(100), 0, manualClock().now);
    expect(rl.take(subject('1', { 'x-api-key': 'a' }))).toBe(0);
    expect(rl.take(subject('2', { 'x-api-key': 'a' }))).toBe(1);
    expect(rl.take(subject('1'))).toBe(0);
    expect(rl.take(subject('2'))).toBe(1);
    const long = 'k'.repeat(5000);
    expect(rl.take(subject('1', { 'x-api-key': long }))).toBe(0);
    expect(rl.take(subject('1', { 'x-api-key': long }))).toBe(1);
    expect(rl.take(subject('1', { 'x-api-key': long + 'x' }))).toBe(0);
  });

  it('route: one bucket for everyone', () => {
    const rl = compileRateLimit({ requestsPerSecond: 1, burst: 2, key: 'route' }, allocateBuckets(100), 0, manualClock().now);
    expect(rl.take(subject('1'))).toBe(0);
    expect(rl.take(subject('2', { 'x-api-key': 'b' }))).toBe(0);
    expect(rl.take(subject('3'))).toBe(1);
  });
});

describe('rateLimit configuration', () => {
  const routeWith = (rateLimit: string) =>
    [
      'listeners:', //                                  1
      '  - port: 15000', //                             2
      '    routes:', //                                 3
      '      - match: { prefix: / }', //                4
      '        cluster: app', //                        5
      `        rateLimit: ${rateLimit}`, //             6
      'clusters:',
      '  - name: app',
      '    endpoints: [127.0.0.1:8080]',
      '',
    ].join('\n');

  function load(rateLimit: string) {
    return loadConfigText(routeWith(rateLimit), 'f.yaml');
  }

  function errors(rateLimit: string): string[] {
    const r = load(rateLimit);
    if (r.ok) throw new Error('expected the configuration to be refused');
    return r.errors.map(formatConfigError);
  }

  it('defaults: burst is requestsPerSecond rounded up, the key clientIp; header names are lower-cased', () => {
    const a = load('{ requestsPerSecond: 100 }');
    const b = load('{ requestsPerSecond: 0.5, key: "header:X-Api-Key" }');
    const c = load('{ requestsPerSecond: 2, burst: 10, key: route }');
    if (!a.ok || !b.ok || !c.ok) throw new Error('expected valid configurations');
    expect(a.config.listeners[0]!.routes[0]!.rateLimit).toEqual({ requestsPerSecond: 100, burst: 100, key: 'clientIp' });
    expect(b.config.listeners[0]!.routes[0]!.rateLimit).toEqual({ requestsPerSecond: 0.5, burst: 1, key: 'header:x-api-key' });
    expect(c.config.listeners[0]!.routes[0]!.rateLimit).toEqual({ requestsPerSecond: 2, burst: 10, key: 'route' });
  });

  it('bad values are refused at the value, with line and column', () => {
    expect(errors('{ requestsPerSecond: 0 }')).toEqual([
      'f.yaml:6:41: listeners.0.routes.0.rateLimit.requestsPerSecond: must be greater than 0',
    ]);
    expect(errors('{ requestsPerSecond: 5, burst: 1.5 }')).toEqual([
      'f.yaml:6:51: listeners.0.routes.0.rateLimit.burst: expected an integer, got 1.5',
    ]);
    expect(errors('{ requestsPerSecond: 5, key: "header:" }')).toEqual([
      'f.yaml:6:49: listeners.0.routes.0.rateLimit.key: must be clientIp, route or "header:NAME"',
    ]);
    expect(errors('{ requestsPerSecond: 5, key: ip }')).toEqual([
      'f.yaml:6:49: listeners.0.routes.0.rateLimit.key: must be clientIp, route or "header:NAME"',
    ]);
  });

  it('requestsPerSecond is required and unknown keys are refused at the key', () => {
    expect(errors('{ burst: 5, perMinute: 3 }')).toEqual([
      'f.yaml:6:20: listeners.0.routes.0.rateLimit.requestsPerSecond: missing required key "requestsPerSecond"',
      'f.yaml:6:32: listeners.0.routes.0.rateLimit.perMinute: unknown key "perMinute"',
    ]);
  });
});

describe.each(PROTOCOLS)('rate limiting end to end over %s', (protocol) => {
  const cleanup = useCleanup();
  const client = clientFor(protocol, cleanup);

  async function proxy(rateLimit: string): Promise<{ t: RunningTandem; up: Upstream }> {
    const up = cleanup.add(await startUpstream());
    const t = cleanup.add(await startTandem(simpleConfig([up.port], `rateLimit: ${rateLimit}`)));
    return { t, up };
  }

  async function get(t: RunningTandem, headers: Record<string, string> = {}) {
    return client.request(`${t.url}/x`, { headers });
  }

  async function statuses(t: RunningTandem, n: number, headers: Record<string, string> = {}): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const res = await get(t, headers);
      await res.body.text();
      out.push(res.statusCode);
    }
    return out;
  }

  it('lets a burst through, then answers 429 rate_limited with retry-after, unseen by the upstream and logged', async () => {
    const { t, up } = await proxy('{ requestsPerSecond: 2, burst: 3 }');
    expect(await statuses(t, 3)).toEqual([200, 200, 200]);
    const res = await get(t);
    await expectTandemError(res, 429, 'rate_limited');
    expect(res.headers['retry-after']).toBe('1');
    expect(up.seen).toHaveLength(3);
    const lines = await waitForAccessLog(t, 4);
    expect(lines.map((l) => l.status)).toEqual([200, 200, 200, 429]);
    expect(lines[3]!.route).toBe('all');
    expect(lines[3]!.cluster).toBeNull();
    expect(lines[3]!.attempts).toBe(0);
  });

  it('after 1/rate seconds one more request passes, and only one', async () => {
    const { t, up } = await proxy('{ requestsPerSecond: 4, burst: 1, key: route }');
    expect(await statuses(t, 2)).toEqual([200, 429]);
    await new Promise((resolve) => setTimeout(resolve, 300)); // 1/4 s plus a margin
    expect(await statuses(t, 2)).toEqual([200, 429]);
    expect(up.seen).toHaveLength(2);
  });

  it('header:x-api-key keys separate buckets; requests without the header share one', async () => {
    const { t, up } = await proxy('{ requestsPerSecond: 1, burst: 2, key: "header:X-Api-Key" }');
    expect(await statuses(t, 3, { 'x-api-key': 'alice' })).toEqual([200, 200, 429]);
    expect(await statuses(t, 3, { 'x-api-key': 'bob' })).toEqual([200, 200, 429]);
    expect(await statuses(t, 3)).toEqual([200, 200, 429]);
    expect(up.seen.map((r) => r.headers['x-api-key'])).toEqual(['alice', 'alice', 'bob', 'bob', undefined, undefined]);
  });

  it('the route key shares one bucket among all clients', async () => {
    const { t, up } = await proxy('{ requestsPerSecond: 1, burst: 2, key: route }');
    expect(await statuses(t, 1, { 'x-api-key': 'alice' })).toEqual([200]);
    expect(await statuses(t, 1, { 'x-api-key': 'bob' })).toEqual([200]);
    const res = await get(t, { 'x-api-key': 'carol' });
    await expectTandemError(res, 429, 'rate_limited');
    expect(up.seen).toHaveLength(2);
  });

  it('a route without rateLimit is never limited', async () => {
    const up = cleanup.add(await startUpstream());
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    expect(await statuses(t, 20)).toEqual(Array(20).fill(200));
  });
});
