import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Endpoint } from '../src/cluster/endpoint.js';
import { OutlierDetector } from '../src/cluster/outlier.js';
import type { OutlierDetectionConfig } from '../src/config/types.js';

const created: Endpoint[] = [];
const detectors: OutlierDetector[] = [];

afterEach(async () => {
  for (const detector of detectors.splice(0)) detector.close();
  await Promise.all(created.splice(0).map((endpoint) => endpoint.close()));
});

function endpoints(count: number): Endpoint[] {
  const list = Array.from(
    { length: count },
    (_, i) =>
      new Endpoint(
        { address: '127.0.0.1', port: 21001 + i, weight: 1 },
        { connectTimeout: 1000, pool: { connections: 4, keepAliveTimeout: 4000 } },
      ),
  );
  created.push(...list);
  return list;
}

interface Setup {
  detector: OutlierDetector;
  ejections: Endpoint[];
  /** performance.now() of each ejection, in order */
  ejectedAt: number[];
}

function detect(cfg: Partial<OutlierDetectionConfig>, list: Endpoint[]): Setup {
  const ejections: Endpoint[] = [];
  const ejectedAt: number[] = [];
  const detector = new OutlierDetector(
    { consecutive5xx: 3, baseEjectionTime: 60_000, maxEjectionPercent: 100, ...cfg },
    list,
    (endpoint) => {
      ejections.push(endpoint);
      ejectedAt.push(performance.now());
    },
  );
  detectors.push(detector);
  return { detector, ejections, ejectedAt };
}

function fail(detector: OutlierDetector, endpoint: Endpoint, times: number): void {
  for (let i = 0; i < times; i++) detector.report(endpoint, true);
}

/** Polls until the endpoint is back in rotation; the time it came back, or Infinity after `limitMs`. */
async function returnTime(endpoint: Endpoint, limitMs: number): Promise<number> {
  const deadline = performance.now() + limitMs;
  while (endpoint.ejected) {
    if (performance.now() > deadline) return Infinity;
    await sleep(2);
  }
  return performance.now();
}

/** setTimeout may round its deadline down by up to a millisecond. */
const TIMER_SLACK_MS = 2;

describe('OutlierDetector: counting failures', () => {
  it('ejects after exactly consecutive5xx failures, not one fewer', () => {
    const [endpoint] = endpoints(2) as [Endpoint, Endpoint];
    const { detector, ejections } = detect({ consecutive5xx: 3 }, created);
    fail(detector, endpoint, 2);
    expect(endpoint.ejected).toBe(false);
    expect(endpoint.available).toBe(true);
    expect(ejections).toEqual([]);
    fail(detector, endpoint, 1);
    expect(endpoint.ejected).toBe(true);
    expect(endpoint.available).toBe(false);
    expect(ejections).toEqual([endpoint]);
  });

  it('a success in between resets the count', () => {
    const [endpoint] = endpoints(2) as [Endpoint, Endpoint];
    const { detector, ejections } = detect({ consecutive5xx: 3 }, created);
    fail(detector, endpoint, 2);
    detector.report(endpoint, false);
    fail(detector, endpoint, 2);
    expect(endpoint.ejected).toBe(false);
    fail(detector, endpoint, 1);
    expect(endpoint.ejected).toBe(true);
    expect(ejections).toHaveLength(1);
  });

  it('counts each endpoint on its own', () => {
    const [a, b] = endpoints(2) as [Endpoint, Endpoint];
    const { detector } = detect({ consecutive5xx: 2 }, created);
    detector.report(a, true);
    detector.report(b, true);
    detector.report(b, false);
    detector.report(a, true);
    expect(a.ejected).toBe(true);
    expect(b.ejected).toBe(false);
  });

  it('calls onEject once per ejection, with the endpoint', () => {
    const [a, b, c] = endpoints(3) as [Endpoint, Endpoint, Endpoint];
    const { detector, ejections } = detect({ consecutive5xx: 1 }, created);
    detector.report(b, true);
    detector.report(a, true);
    // reports for an endpoint already out change nothing
    fail(detector, a, 5);
    expect(ejections).toEqual([b, a]);
    expect(c.ejected).toBe(false);
  });

  it('ignores endpoints it was not given (removed by a reload)', () => {
    const [known, stranger] = endpoints(2) as [Endpoint, Endpoint];
    const { detector, ejections } = detect({ consecutive5xx: 1, maxEjectionPercent: 0 }, [known]);
    fail(detector, stranger, 10);
    expect(stranger.ejected).toBe(false);
    expect(ejections).toEqual([]);
    // the stranger took none of the single ejection the cap allows
    detector.report(known, true);
    expect(known.ejected).toBe(true);
  });
});

describe('OutlierDetector: maxEjectionPercent', () => {
  it('50% of 4 endpoints lets 2 out at once, not 3', () => {
    const list = endpoints(4);
    const [a, b, c, d] = list as [Endpoint, Endpoint, Endpoint, Endpoint];
    const { detector, ejections } = detect({ consecutive5xx: 2, maxEjectionPercent: 50 }, list);
    fail(detector, a, 2);
    fail(detector, b, 2);
    fail(detector, c, 5);
    expect([a.ejected, b.ejected, c.ejected, d.ejected]).toEqual([true, true, false, false]);
    expect(ejections).toEqual([a, b]);
  });

  it('always lets one endpoint out, even 1 endpoint at 0%', () => {
    const [only] = endpoints(1) as [Endpoint];
    const { detector, ejections } = detect({ consecutive5xx: 2, maxEjectionPercent: 0 }, created);
    fail(detector, only, 2);
    expect(only.ejected).toBe(true);
    expect(ejections).toEqual([only]);
  });

  it('rounds the share down: 50% of 3 endpoints lets 1 out, not 2', () => {
    const list = endpoints(3);
    const [a, b] = list as [Endpoint, Endpoint, Endpoint];
    const { detector } = detect({ consecutive5xx: 1, maxEjectionPercent: 50 }, list);
    detector.report(a, true);
    detector.report(b, true);
    expect([a.ejected, b.ejected]).toEqual([true, false]);
  });

  it('an endpoint held back by the cap goes out on its next failure once there is room', async () => {
    const list = endpoints(2);
    const [a, b] = list as [Endpoint, Endpoint];
    const base = 40;
    const { detector, ejections } = detect({ consecutive5xx: 2, maxEjectionPercent: 50, baseEjectionTime: base }, list);
    fail(detector, a, 2);
    fail(detector, b, 4);
    expect(b.ejected).toBe(false);
    expect(await returnTime(a, base + 2000)).toBeLessThan(Infinity);
    detector.report(b, true);
    expect(b.ejected).toBe(true);
    expect(ejections).toEqual([a, b]);
  });
});

describe('OutlierDetector: ejection time', () => {
  it('brings the endpoint back after baseEjectionTime, not before, with its count reset', async () => {
    const [endpoint] = endpoints(1) as [Endpoint];
    const base = 80;
    const { detector, ejectedAt } = detect({ consecutive5xx: 2, baseEjectionTime: base }, created);
    fail(detector, endpoint, 2);
    const back = await returnTime(endpoint, base + 2000);
    const out = back - ejectedAt[0]!;
    expect(out).toBeGreaterThanOrEqual(base - TIMER_SLACK_MS);
    expect(out).toBeLessThan(base + 1000);
    expect(endpoint.available).toBe(true);
    // the failures before the ejection no longer count
    detector.report(endpoint, true);
    expect(endpoint.ejected).toBe(false);
    detector.report(endpoint, true);
    expect(endpoint.ejected).toBe(true);
  });

  it('the second ejection in a row lasts twice the base', async () => {
    const [endpoint] = endpoints(1) as [Endpoint];
    const base = 80;
    const { detector, ejectedAt } = detect({ consecutive5xx: 1, baseEjectionTime: base }, created);
    detector.report(endpoint, true);
    await returnTime(endpoint, base + 2000);
    detector.report(endpoint, true);
    expect(endpoint.ejected).toBe(true);
    const back = await returnTime(endpoint, 2 * base + 2000);
    const out = back - ejectedAt[1]!;
    expect(out).toBeGreaterThanOrEqual(2 * base - TIMER_SLACK_MS);
    expect(out).toBeLessThan(2 * base + 1000);
  });

  it('time in rotation decays the multiplier: back to base after a healthy spell', async () => {
    const [endpoint] = endpoints(1) as [Endpoint];
    const base = 120;
    const { detector, ejectedAt } = detect({ consecutive5xx: 1, baseEjectionTime: base }, created);
    detector.report(endpoint, true);
    await returnTime(endpoint, base + 2000);
    // a whole base in rotation takes the multiplier from 1 back to 0
    await sleep(base + 20);
    detector.report(endpoint, true);
    const back = await returnTime(endpoint, 2 * base + 2000);
    const out = back - ejectedAt[1]!;
    expect(out).toBeGreaterThanOrEqual(base - TIMER_SLACK_MS);
    // without the decay it would be out for 2 × base
    expect(out).toBeLessThan(1.5 * base);
  });

  it('close() clears the timers and leaves the endpoints as they are', async () => {
    const [a, b] = endpoints(2) as [Endpoint, Endpoint];
    const base = 30;
    const { detector, ejections } = detect({ consecutive5xx: 1, baseEjectionTime: base }, created);
    detector.report(a, true);
    detector.close();
    await sleep(base * 4);
    expect(a.ejected).toBe(true);
    expect(b.ejected).toBe(false);
    // a closed detector starts no new timers
    detector.report(b, true);
    expect(b.ejected).toBe(false);
    expect(ejections).toEqual([a]);
  });
});
