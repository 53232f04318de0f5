// Active health checks: real probes to real servers on loopback, on fake
// time (test/support/fake-time.ts). The clock moves only when a test says, so
// every probe time, interval and timeout is asserted to the millisecond,
// while each probe's request and answer still cross a real socket: after
// moving the clock, a test waits (real time, clock standing) until the probes
// it started have been judged. Math.random is pinned, so the schedule is
// known; judging a probe draws the jitter of the next interval, which is how
// a test knows a probe is over.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { Endpoint } from '../src/cluster/endpoint.js';
import { HealthChecker, jitteredInterval } from '../src/cluster/health.js';
import type { HealthCheckConfig } from '../src/config/types.js';
import { untilReal, useFakeTime } from './support/fake-time.js';
import { deadPort } from './support/harness.js';

const POOL = { connectTimeout: 1000, pool: { connections: 4, keepAliveTimeout: 4000 } };

interface Probe {
  url: string;
  userAgent: string | undefined;
  connection: string | undefined;
  remotePort: number;
  at: number;
  /** when the server saw the request's socket close, if it did */
  closedAt?: number;
}

interface ProbeServer {
  port: number;
  probes: Probe[];
  openSockets: Set<Socket>;
  /** most requests the server held open at the same time */
  maxConcurrent: number;
  close(): Promise<void>;
}

/** Records every probe, then lets `answer` respond (or not). */
async function startProbeServer(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<ProbeServer> {
  const openSockets = new Set<Socket>();
  const probes: Probe[] = [];
  let concurrent = 0;
  const state = { maxConcurrent: 0 };
  const server: Server = createServer((req, res) => {
    const probe: Probe = {
      url: req.url ?? '',
      userAgent: req.headers['user-agent'],
      connection: req.headers.connection,
      remotePort: req.socket.remotePort ?? 0,
      at: performance.now(),
    };
    probes.push(probe);
    state.maxConcurrent = Math.max(state.maxConcurrent, ++concurrent);
    res.on('close', () => {
      concurrent--;
      probe.closedAt = performance.now();
    });
    answer(req, res);
  });
  server.keepAliveTimeout = 10_000;
  server.on('connection', (socket) => {
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    probes,
    openSockets,
    get maxConcurrent() {
      return state.maxConcurrent;
    },
    close: () => {
      for (const socket of openSockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function answering(status: () => number): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    res.writeHead(status(), { 'content-type': 'text/plain' });
    res.end('state');
  };
}

function config(overrides: Partial<HealthCheckConfig> = {}): HealthCheckConfig {
  return { path: '/healthz', interval: 20, timeout: 2000, healthyThreshold: 2, unhealthyThreshold: 3, ...overrides };
}

describe('HealthChecker', () => {
  useFakeTime();
  const endpoints: Endpoint[] = [];
  const checkers: HealthChecker[] = [];
  const servers: ProbeServer[] = [];
  /** Math.random, pinned at 0.5: the first probe comes half an interval after start(), the next ones one interval after the previous one ended */
  let random: MockInstance<() => number>;
  /** endpoints whose first probe time start() drew */
  let started = 0;
  let t0 = 0;

  beforeEach(() => {
    random = vi.spyOn(Math, 'random').mockReturnValue(0.5);
    started = 0;
    t0 = performance.now();
  });

  afterEach(async () => {
    random.mockRestore();
    for (const checker of checkers.splice(0)) checker.close();
    await Promise.all(endpoints.splice(0).map((endpoint) => endpoint.close()));
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  function endpointAt(port: number): Endpoint {
    const endpoint = new Endpoint({ address: '127.0.0.1', port, weight: 1 }, POOL);
    endpoints.push(endpoint);
    return endpoint;
  }

  async function server(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<ProbeServer> {
    const up = await startProbeServer(answer);
    servers.push(up);
    return up;
  }

  function check(cfg: HealthCheckConfig, targets: Endpoint[], onChange: (e: Endpoint, healthy: boolean) => void = () => undefined): HealthChecker {
    const checker = new HealthChecker(cfg, targets, onChange);
    checkers.push(checker);
    checker.start();
    started += targets.length;
    return checker;
  }

  /** probes judged so far, by every checker of the test */
  const judged = (): number => random.mock.calls.length - started;

  /** Moves the clock by `ms`, then waits (real I/O, clock standing) until `total` probes have been judged in all. */
  async function advance(ms: number, total: number): Promise<void> {
    vi.advanceTimersByTime(ms);
    expect(await untilReal(() => judged() >= total)).toBe(true);
    expect(judged()).toBe(total);
  }

  /** the fake times, from the test's start, at which `up` saw each probe */
  const probeTimes = (up: ProbeServer): number[] => up.probes.map((p) => p.at - t0);

  it('GETs the configured path as tandem-health-check over one kept-alive connection of its own', async () => {
    const upstream = await server(answering(() => 200));
    const endpoint = endpointAt(upstream.port);
    const changes: boolean[] = [];
    check(config({ path: '/ready?probe=1' }), [endpoint], (_e, healthy) => changes.push(healthy));

    await advance(10, 1);
    for (let n = 2; n <= 4; n++) await advance(20, n);
    for (const probe of upstream.probes) {
      expect(probe.url).toBe('/ready?probe=1');
      expect(probe.userAgent).toBe('tandem-health-check');
      expect(probe.connection).toBe('keep-alive');
    }
    expect(upstream.probes).toHaveLength(4);
    expect(new Set(upstream.probes.map((p) => p.remotePort)).size).toBe(1);
    // The proxied-traffic pool never opened a connection for the probes.
    expect(endpoint.pool.stats.connected).toBe(0);
    expect(endpoint.healthy).toBe(true);
    expect(changes).toEqual([]);
  });

  it('probes one jittered interval (±10%) after the previous probe ended, the first within the first interval', async () => {
    const upstream = await server(answering(() => 200));
    // start(): 0.25 of the interval; then intervals of 0.9, 1.05 and 1.0
    random.mockReturnValueOnce(0.25).mockReturnValueOnce(0).mockReturnValueOnce(0.75);
    check(config({ interval: 1000 }), [endpointAt(upstream.port)]);
    await advance(250, 1);
    await advance(900, 2);
    await advance(1050, 3);
    await advance(1000, 4);
    expect(probeTimes(upstream)).toEqual([250, 1150, 2200, 3200]);
  });

  it('marks a 503-answering endpoint unhealthy after exactly unhealthyThreshold probes, and says so once', async () => {
    const upstream = await server(answering(() => 503));
    const endpoint = endpointAt(upstream.port);
    const changes: Array<{ endpoint: Endpoint; healthy: boolean }> = [];
    check(config({ unhealthyThreshold: 3 }), [endpoint], (e, healthy) => changes.push({ endpoint: e, healthy }));

    await advance(10, 1);
    await advance(20, 2);
    expect(changes).toEqual([]);
    expect(endpoint.healthy).toBe(true);
    await advance(20, 3);
    expect(changes).toEqual([{ endpoint, healthy: false }]);
    expect(endpoint.healthy).toBe(false);
    expect(endpoint.available).toBe(false);

    // Further failures are no new transition.
    for (let n = 4; n <= 7; n++) await advance(20, n);
    expect(changes).toHaveLength(1);
  });

  it('marks an unhealthy endpoint healthy again after exactly healthyThreshold passes', async () => {
    let status = 503;
    const upstream = await server(answering(() => status));
    const endpoint = endpointAt(upstream.port);
    const changes: Array<{ healthy: boolean; probesSeen: number }> = [];
    check(config({ unhealthyThreshold: 2, healthyThreshold: 3 }), [endpoint], (_e, healthy) => {
      if (!healthy) status = 200;
      changes.push({ healthy, probesSeen: upstream.probes.length });
    });

    await advance(10, 1);
    for (let n = 2; n <= 5; n++) await advance(20, n);
    // two failures, then three passes
    expect(changes).toEqual([
      { healthy: false, probesSeen: 2 },
      { healthy: true, probesSeen: 5 },
    ]);
    expect(endpoint.healthy).toBe(true);

    for (let n = 6; n <= 8; n++) await advance(20, n);
    expect(changes).toHaveLength(2);
  });

  it('counts only consecutive failures towards unhealthyThreshold', async () => {
    // fail, fail, pass, ... never reaches 3 failures in a row
    let answered = 0;
    const upstream = await server(answering(() => (++answered % 3 === 0 ? 200 : 503)));
    const endpoint = endpointAt(upstream.port);
    const changes: boolean[] = [];
    check(config({ unhealthyThreshold: 3 }), [endpoint], (_e, healthy) => changes.push(healthy));
    await advance(10, 1);
    for (let n = 2; n <= 10; n++) await advance(20, n);
    expect(changes).toEqual([]);
    expect(endpoint.healthy).toBe(true);
  });

  it('counts only consecutive passes towards healthyThreshold', async () => {
    // an unhealthy one answering pass, fail, ... never reaches 2 passes in a row
    let answered = 0;
    const flaky = await server(answering(() => (++answered % 2 === 0 ? 503 : 200)));
    const sick = endpointAt(flaky.port);
    sick.healthy = false;
    const changes: boolean[] = [];
    check(config({ healthyThreshold: 2 }), [sick], (_e, healthy) => changes.push(healthy));
    await advance(10, 1);
    for (let n = 2; n <= 8; n++) await advance(20, n);
    expect(changes).toEqual([]);
    expect(sick.healthy).toBe(false);
  });

  it.each([
    [204, true],
    [299, true],
    [302, false],
    [404, false],
    [500, false],
  ])('takes %i as %s', async (status, passes) => {
    const upstream = await server(answering(() => status));
    const endpoint = endpointAt(upstream.port);
    check(config({ unhealthyThreshold: 1 }), [endpoint]);
    await advance(10, 1);
    expect(endpoint.healthy).toBe(passes);
  });

  it('counts a refused connection as a failure, without waiting for any timeout', async () => {
    const endpoint = endpointAt(await deadPort());
    const changes: boolean[] = [];
    check(config({ unhealthyThreshold: 2 }), [endpoint], (_e, healthy) => changes.push(healthy));
    // each probe is judged at the time it was sent: the clock never moved past it
    await advance(10, 1);
    await advance(20, 2);
    expect(changes).toEqual([false]);
    expect(endpoint.healthy).toBe(false);
  });

  it('counts a reset as a failure', async () => {
    const upstream = await server((req) => req.socket.destroy());
    const endpoint = endpointAt(upstream.port);
    const changes: Array<{ healthy: boolean; probesSeen: number }> = [];
    check(config({ unhealthyThreshold: 2 }), [endpoint], (_e, healthy) => changes.push({ healthy, probesSeen: upstream.probes.length }));
    await advance(10, 1);
    await advance(20, 2);
    expect(changes).toEqual([{ healthy: false, probesSeen: 2 }]);
  });

  it('gives up on a silent endpoint after exactly its own timeout, one probe at a time', async () => {
    const upstream = await server(() => undefined);
    const endpoint = endpointAt(upstream.port);
    const changes: boolean[] = [];
    // The interval is shorter than the timeout: overlapping probes would show up as concurrent requests.
    check(config({ interval: 10, timeout: 100, unhealthyThreshold: 2 }), [endpoint], (_e, healthy) => changes.push(healthy));

    for (let n = 1; n <= 4; n++) {
      vi.advanceTimersByTime(n === 1 ? 5 : 10);
      expect(await untilReal(() => upstream.probes.length === n)).toBe(true);
      vi.advanceTimersByTime(99);
      // one millisecond before the timeout the probe is still waiting
      expect(await untilReal(() => upstream.probes[n - 1]!.closedAt !== undefined, 50)).toBe(false);
      expect(judged()).toBe(n - 1);
      await advance(1, n);
      expect(await untilReal(() => upstream.probes[n - 1]!.closedAt !== undefined)).toBe(true);
      if (n === 2) expect(changes).toEqual([false]);
    }
    expect(changes).toEqual([false]);
    expect(upstream.maxConcurrent).toBe(1);
    // Aborted by our timer exactly 100 ms after it was sent, each the interval after the previous one ended.
    expect(probeTimes(upstream)).toEqual([5, 115, 225, 335]);
    for (const probe of upstream.probes) expect(probe.closedAt! - probe.at).toBe(100);
  });

  it('counts a body that does not finish within the timeout as a failure', async () => {
    const upstream = await server((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
    });
    const endpoint = endpointAt(upstream.port);
    const changes: boolean[] = [];
    check(config({ timeout: 50, unhealthyThreshold: 2 }), [endpoint], (_e, healthy) => changes.push(healthy));
    vi.advanceTimersByTime(10);
    expect(await untilReal(() => upstream.probes.length === 1)).toBe(true);
    await advance(50, 1);
    vi.advanceTimersByTime(20);
    expect(await untilReal(() => upstream.probes.length === 2)).toBe(true);
    await advance(50, 2);
    expect(changes).toEqual([false]);
  });

  it('stops probing and closes its connections on close(), even mid-probe', async () => {
    const healthy = await server(answering(() => 200));
    const silent = await server(() => undefined);
    const checker = check(config({ interval: 10, timeout: 5000 }), [endpointAt(healthy.port), endpointAt(silent.port)]);
    await advance(5, 1);
    expect(await untilReal(() => silent.probes.length === 1)).toBe(true);
    await advance(10, 2);
    await advance(10, 3);
    expect(healthy.probes).toHaveLength(3);
    expect(silent.openSockets.size).toBe(1);

    checker.close();
    expect(await untilReal(() => healthy.openSockets.size === 0 && silent.openSockets.size === 0, 1000)).toBe(true);
    vi.advanceTimersByTime(10_000);
    expect(await untilReal(() => healthy.probes.length > 3 || silent.probes.length > 1, 50)).toBe(false);
    expect(healthy.openSockets.size).toBe(0);
  });

  it('starts no timer before start() and none after close() without start()', () => {
    const checker = new HealthChecker(config(), [endpointAt(9)], () => undefined);
    expect(vi.getTimerCount()).toBe(0);
    checker.close();
    checker.start();
    expect(vi.getTimerCount()).toBe(0);
    expect(random).not.toHaveBeenCalled();
  });

  it('spreads the first probes of a cluster over the first interval', async () => {
    const upstream = await server(answering(() => 200));
    const count = 20;
    // start() draws one first-probe time per endpoint: the middles of 20 equal slices of the interval
    let draws = 0;
    random.mockImplementation(() => (draws < count ? (draws++ + 0.5) / count : 0.5));
    check(config({ interval: 1000 }), Array.from({ length: count }, () => endpointAt(upstream.port)));
    await advance(25, 1);
    for (let n = 2; n <= count; n++) await advance(50, n);
    // each on its own connection, at its own time
    expect(new Set(upstream.probes.map((p) => p.remotePort)).size).toBe(count);
    expect(probeTimes(upstream)).toEqual(Array.from({ length: count }, (_, i) => 25 + 50 * i));
  });
});

describe('jitteredInterval', () => {
  it('stays within ±10% of the interval and uses the whole range', () => {
    expect(jitteredInterval(1000, () => 0)).toBeCloseTo(900);
    expect(jitteredInterval(1000, () => 0.5)).toBeCloseTo(1000);
    expect(jitteredInterval(1000, () => 0.999999)).toBeCloseTo(1100, 2);
    const draws = Array.from({ length: 1000 }, () => jitteredInterval(1000));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(900);
    expect(Math.max(...draws)).toBeLessThan(1100);
    expect(Math.max(...draws) - Math.min(...draws)).toBeGreaterThan(150);
  });
});
