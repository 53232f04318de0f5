// Outlier detection on fake time (test/support/fake-time.ts): ejection
// durations, their growth and decay are asserted to the millisecond.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { Endpoint } from '../src/cluster/endpoint.js';
import { OutlierDetector } from '../src/cluster/outlier.js';
import type { OutlierDetectionConfig } from '../src/config/types.js';
import { useFakeTime } from './support/fake-time.js';

useFakeTime();

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
}

function detect(cfg: Partial<OutlierDetectionConfig>, list: Endpoint[]): Setup {
  const ejections: Endpoint[] = [];
  const detector = new OutlierDetector(
    { consecutive5xx: 3, baseEjectionTime: 60_000, maxEjectionPercent: 100, ...cfg },
    list,
    (endpoint) => ejections.push(endpoint),
  );
  detectors.push(detector);
  return { detector, ejections };
}

function fail(detector: OutlierDetector, endpoint: Endpoint, times: number): void {
  for (let i = 0; i < times; i++) detector.report(endpoint, true);
}

/** Ejected now: back in rotation exactly `ms` later, not a millisecond before. */
function expectOutFor(endpoint: Endpoint, ms: number): void {
  expect(endpoint.ejected).toBe(true);
  vi.advanceTimersByTime(ms - 1);
  expect(endpoint.ejected).toBe(true);
  expect(endpoint.available).toBe(false);
  vi.advanceTimersByTime(1);
  expect(endpoint.ejected).toBe(false);
  expect(endpoint.available).toBe(true);
}

/** With consecutive5xx 1: each failure ejects the endpoint for the next of `durations` (ms), checked with expectOutFor. */
function expectEjectionsLasting(detector: OutlierDetector, endpoint: Endpoint, durations: number[]): void {
  for (const ms of durations) {
    detector.report(endpoint, true);
    expectOutFor(endpoint, ms);
  }
}

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

  it('an endpoint held back by the cap goes out on its next failure once there is room', () => {
    const list = endpoints(2);
    const [a, b] = list as [Endpoint, Endpoint];
    const base = 30_000;
    const { detector, ejections } = detect({ consecutive5xx: 2, maxEjectionPercent: 50, baseEjectionTime: base }, list);
    fail(detector, a, 2);
    fail(detector, b, 4);
    expect(b.ejected).toBe(false);
    expectOutFor(a, base);
    detector.report(b, true);
    expect(b.ejected).toBe(true);
    expect(ejections).toEqual([a, b]);
  });
});

describe('OutlierDetector: ejection time', () => {
  it('brings the endpoint back after baseEjectionTime, not before, with its count reset', () => {
    const [endpoint] = endpoints(1) as [Endpoint];
    const base = 30_000;
    const { detector } = detect({ consecutive5xx: 2, baseEjectionTime: base }, created);
    fail(detector, endpoint, 2);
    expectOutFor(endpoint, base);
    // the failures before the ejection no longer count
    detector.report(endpoint, true);
    expect(endpoint.ejected).toBe(false);
    detector.report(endpoint, true);
    expect(endpoint.ejected).toBe(true);
  });

  it('each ejection in a row lasts one base longer', () => {
    const [endpoint] = endpoints(1) as [Endpoint];
    const base = 30_000;
    const { detector } = detect({ consecutive5xx: 1, baseEjectionTime: base }, created);
    expectEjectionsLasting(detector, endpoint, [base, 2 * base, 3 * base, 4 * base]);
  });

  it('stops growing at 300 s (or base, if longer)', () => {
    const [endpoint] = endpoints(1) as [Endpoint];
    const base = 70_000;
    const { detector } = detect({ consecutive5xx: 1, baseEjectionTime: base }, created);
    expectEjectionsLasting(detector, endpoint, [base, 2 * base, 3 * base, 4 * base, 300_000, 300_000]);
    const [long] = endpoints(1) as [Endpoint];
    const longer = detect({ consecutive5xx: 1, baseEjectionTime: 400_000 }, [long]);
    expectEjectionsLasting(longer.detector, long, [400_000, 400_000]);
  });

  it('time in rotation decays the multiplier: each whole base in rotation takes one off', () => {
    const [endpoint] = endpoints(1) as [Endpoint];
    const base = 30_000;
    const { detector } = detect({ consecutive5xx: 1, baseEjectionTime: base }, created);
    expectEjectionsLasting(detector, endpoint, [base, 2 * base, 3 * base]);
    // just under two bases in rotation take one off: 3 - 1 + 1
    vi.advanceTimersByTime(2 * base - 1);
    detector.report(endpoint, true);
    expectOutFor(endpoint, 3 * base);
    // two whole bases take two off: 3 - 2 + 1
    vi.advanceTimersByTime(2 * base);
    detector.report(endpoint, true);
    expectOutFor(endpoint, 2 * base);
    // a long healthy spell: back to base, never below
    vi.advanceTimersByTime(100 * base);
    detector.report(endpoint, true);
    expectOutFor(endpoint, base);
  });

  it('close() clears the timers and leaves the endpoints as they are', () => {
    const [a, b] = endpoints(2) as [Endpoint, Endpoint];
    const base = 30_000;
    const { detector, ejections } = detect({ consecutive5xx: 1, baseEjectionTime: base }, created);
    detector.report(a, true);
    expect(vi.getTimerCount()).toBe(1);
    detector.close();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(base * 4);
    expect(a.ejected).toBe(true);
    expect(b.ejected).toBe(false);
    // a closed detector starts no new timers
    detector.report(b, true);
    expect(b.ejected).toBe(false);
    expect(ejections).toEqual([a]);
  });
});
