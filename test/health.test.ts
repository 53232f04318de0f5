import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { Endpoint } from '../src/cluster/endpoint.js';
import { HealthChecker, jitteredInterval } from '../src/cluster/health.js';
import type { HealthCheckConfig } from '../src/config/types.js';
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

async function waitFor(condition: () => boolean, what: string, ms = 3000): Promise<void> {
  const until = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function config(overrides: Partial<HealthCheckConfig> = {}): HealthCheckConfig {
  return { path: '/healthz', interval: 20, timeout: 2000, healthyThreshold: 2, unhealthyThreshold: 3, ...overrides };
}

describe('HealthChecker', () => {
  const endpoints: Endpoint[] = [];
  const checkers: HealthChecker[] = [];
  const servers: ProbeServer[] = [];

  afterEach(async () => {
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
    const started = await startProbeServer(answer);
    servers.push(started);
    return started;
  }

  function check(cfg: HealthCheckConfig, targets: Endpoint[], onChange: (e: Endpoint, healthy: boolean) => void = () => undefined): HealthChecker {
    const checker = new HealthChecker(cfg, targets, onChange);
    checkers.push(checker);
    checker.start();
    return checker;
  }

  it('GETs the configured path as tandem-health-check over one kept-alive connection of its own', async () => {
    const upstream = await server(answering(() => 200));
    const endpoint = endpointAt(upstream.port);
    const changes: boolean[] = [];
    check(config({ path: '/ready?probe=1' }), [endpoint], (_e, healthy) => changes.push(healthy));

    await waitFor(() => upstream.probes.length >= 4, '4 probes');
    for (const probe of upstream.probes) {
      expect(probe.url).toBe('/ready?probe=1');
      expect(probe.userAgent).toBe('tandem-health-check');
      expect(probe.connection).toBe('keep-alive');
    }
    expect(new Set(upstream.probes.map((p) => p.remotePort)).size).toBe(1);
    // The proxied-traffic pool never opened a connection for the probes.
    expect(endpoint.pool.stats.connected).toBe(0);
    expect(endpoint.healthy).toBe(true);
    expect(changes).toEqual([]);
  });

  it('marks a 503-answering endpoint unhealthy after exactly unhealthyThreshold probes, and says so once', async () => {
    const upstream = await server(answering(() => 503));
    const endpoint = endpointAt(upstream.port);
    const changes: Array<{ endpoint: Endpoint; healthy: boolean; probesSeen: number }> = [];
    check(config({ unhealthyThreshold: 3 }), [endpoint], (e, healthy) => changes.push({ endpoint: e, healthy, probesSeen: upstream.probes.length }));

    await waitFor(() => changes.length > 0, 'the transition');
    expect(changes[0]).toEqual({ endpoint, healthy: false, probesSeen: 3 });
    expect(endpoint.healthy).toBe(false);
    expect(endpoint.available).toBe(false);

    // Further failures are no new transition.
    await waitFor(() => upstream.probes.length >= 7, '4 more probes');
    expect(changes).toHaveLength(1);
  });

  it('marks an unhealthy endpoint healthy again after exactly healthyThreshold passes', async () => {
    let status = 503;
    const upstream = await server(answering(() => status));
    const endpoint = endpointAt(upstream.port);
    let failedProbes = 0;
    const changes: Array<{ healthy: boolean; passesSeen: number }> = [];
    check(config({ unhealthyThreshold: 2, healthyThreshold: 3 }), [endpoint], (_e, healthy) => {
      if (!healthy) {
        failedProbes = upstream.probes.length;
        status = 200;
      }
      changes.push({ healthy, passesSeen: upstream.probes.length - failedProbes });
    });

    await waitFor(() => changes.length >= 2, 'two transitions');
    expect(changes).toEqual([
      { healthy: false, passesSeen: 0 },
      { healthy: true, passesSeen: 3 },
    ]);
    expect(failedProbes).toBe(2);
    expect(endpoint.healthy).toBe(true);

    const seen = upstream.probes.length;
    await waitFor(() => upstream.probes.length >= seen + 3, '3 more probes');
    expect(changes).toHaveLength(2);
  });

  it('counts only consecutive results towards either threshold', async () => {
    // fail, fail, pass, ... never reaches 3 failures in a row
    let answered = 0;
    const upstream = await server(answering(() => (++answered % 3 === 0 ? 200 : 503)));
    const endpoint = endpointAt(upstream.port);
    const changes: boolean[] = [];
    check(config({ unhealthyThreshold: 3 }), [endpoint], (_e, healthy) => changes.push(healthy));
    await waitFor(() => upstream.probes.length >= 10, '10 probes');
    expect(changes).toEqual([]);
    expect(endpoint.healthy).toBe(true);

    // and an unhealthy one answering pass, fail, ... never reaches 2 passes in a row
    let flipped = 0;
    const flaky = await server(answering(() => (++flipped % 2 === 0 ? 503 : 200)));
    const sick = endpointAt(flaky.port);
    sick.healthy = false;
    check(config({ healthyThreshold: 2 }), [sick], (_e, healthy) => changes.push(healthy));
    await waitFor(() => flaky.probes.length >= 8, '8 probes');
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
    await waitFor(() => upstream.probes.length >= 2, '2 probes');
    // The second probe is sent only after the first was judged.
    expect(endpoint.healthy).toBe(passes);
  });

  it('counts a refused connection as a failure', async () => {
    const endpoint = endpointAt(await deadPort());
    const changes: boolean[] = [];
    const started = performance.now();
    check(config({ unhealthyThreshold: 2 }), [endpoint], (_e, healthy) => changes.push(healthy));
    await waitFor(() => changes.length > 0, 'the transition');
    expect(changes).toEqual([false]);
    expect(endpoint.healthy).toBe(false);
    // 2 probes, each about one interval apart: nowhere near a second
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('counts a reset as a failure', async () => {
    const upstream = await server((req) => req.socket.destroy());
    const endpoint = endpointAt(upstream.port);
    const changes: Array<{ healthy: boolean; probesSeen: number }> = [];
    check(config({ unhealthyThreshold: 2 }), [endpoint], (_e, healthy) => changes.push({ healthy, probesSeen: upstream.probes.length }));
    await waitFor(() => changes.length > 0, 'the transition');
    expect(changes).toEqual([{ healthy: false, probesSeen: 2 }]);
  });

  it('gives up on a silent endpoint after its own timeout, one probe at a time', async () => {
    const upstream = await server(() => undefined);
    const endpoint = endpointAt(upstream.port);
    const changes: boolean[] = [];
    // The interval is shorter than the timeout: overlapping probes would show up as concurrent requests.
    check(config({ interval: 10, timeout: 100, unhealthyThreshold: 2 }), [endpoint], (_e, healthy) => changes.push(healthy));

    await waitFor(() => changes.length > 0, 'the transition');
    expect(changes).toEqual([false]);
    expect(upstream.probes).toHaveLength(2);
    await waitFor(() => upstream.probes.length >= 4, '4 probes');
    expect(upstream.maxConcurrent).toBe(1);
    for (const probe of upstream.probes.slice(0, 3)) {
      expect(probe.closedAt).toBeDefined();
      const held = probe.closedAt! - probe.at;
      // Aborted by our 100 ms timer, not by undici's coarse one (or not at all).
      // The server sees the request after the connect, so it may see less than 100 ms.
      expect(held).toBeGreaterThanOrEqual(50);
      expect(held).toBeLessThan(600);
    }
  });

  it('counts a body that does not finish within the timeout as a failure', async () => {
    const upstream = await server((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
    });
    const endpoint = endpointAt(upstream.port);
    const changes: boolean[] = [];
    check(config({ timeout: 50, unhealthyThreshold: 2 }), [endpoint], (_e, healthy) => changes.push(healthy));
    await waitFor(() => changes.length > 0, 'the transition');
    expect(changes).toEqual([false]);
  });

  it('stops probing and closes its connections on close(), even mid-probe', async () => {
    const healthy = await server(answering(() => 200));
    const silent = await server(() => undefined);
    const checker = check(config({ interval: 10, timeout: 5000 }), [endpointAt(healthy.port), endpointAt(silent.port)]);
    await waitFor(() => healthy.probes.length >= 3 && silent.probes.length >= 1, 'probes to both');
    expect(silent.openSockets.size).toBe(1);

    checker.close();
    const seen = healthy.probes.length;
    await waitFor(() => healthy.openSockets.size === 0 && silent.openSockets.size === 0, 'sockets to close', 1000);
    await sleep(100);
    expect(healthy.probes).toHaveLength(seen);
    expect(silent.probes).toHaveLength(1);
    expect(healthy.openSockets.size).toBe(0);
  });

  it('does not probe before start() and not after close() without start()', async () => {
    const upstream = await server(answering(() => 200));
    const checker = new HealthChecker(config(), [endpointAt(upstream.port)], () => undefined);
    await sleep(60);
    expect(upstream.probes).toHaveLength(0);
    checker.close();
    checker.start();
    await sleep(60);
    expect(upstream.probes).toHaveLength(0);
  });

  it('spreads the first probes of a cluster over the first interval', async () => {
    const upstream = await server(answering(() => 200));
    const interval = 1000;
    const targets = Array.from({ length: 20 }, () => endpointAt(upstream.port));
    const started = performance.now();
    check(config({ interval }), targets);
    // Each endpoint has its own connection: its first probe is the first request on its port.
    const firstOf = new Map<number, number>();
    await waitFor(() => {
      for (const probe of upstream.probes) if (!firstOf.has(probe.remotePort)) firstOf.set(probe.remotePort, probe.at);
      return firstOf.size === targets.length;
    }, 'a first probe per endpoint');
    const firsts = [...firstOf.values()].map((at) => at - started);
    // within the first interval, give or take a loaded machine's late timers
    expect(Math.max(...firsts)).toBeLessThan(interval + 1000);
    // Twenty uniform draws over 1 s span less than 400 ms about once in a million runs;
    // probes in lockstep arrive within a few ms of each other (<100 ms on a loaded machine).
    expect(Math.max(...firsts) - Math.min(...firsts)).toBeGreaterThan(400);
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
