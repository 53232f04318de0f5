// DNS discovery (clusters[].dns) over real sockets: the real getaddrinfo path
// through `localhost`, and an injected resolver for answers /etc/hosts cannot
// give (a set that changes, a name that stops resolving).

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { request } from 'undici';
import type { Endpoint } from '../src/cluster/endpoint.js';
import { DnsDiscovery, lookupAll, type Resolver } from '../src/cluster/dns.js';
import { formatConfigError } from '../src/config/errors.js';
import { loadConfigText } from '../src/config/load.js';
import type { ClusterConfig } from '../src/config/types.js';
import { log } from '../src/observability/log.js';
import { Metrics } from '../src/observability/metrics.js';
import { closeCluster, compileCluster } from '../src/snapshot.js';
import type { ClusterRuntime } from '../src/snapshot-types.js';
import { allocateCluster, SOLE_WORKER } from '../src/workers/shared-state.js';
import { eventually, startTandem, type RunningTandem } from './support/harness.js';

/** A cluster compiled alone, as the only worker, over a fresh shared buffer. */
function compile(c: ClusterConfig, metrics: Metrics, resolve: Resolver): ClusterRuntime {
  return compileCluster(c, metrics, allocateCluster(1), SOLE_WORKER, resolve);
}

interface Upstreams {
  readonly port: number;
  /** per listening address, the paths it answered */
  readonly seen: Map<string, string[]>;
  /** responses held back by `/slow` requests, in arrival order */
  readonly held: (() => void)[];
  close(): Promise<void>;
}

/** One HTTP server per address, all on the same port (free on every address), answering with their own address. */
async function startUpstreams(addresses: readonly string[]): Promise<Upstreams> {
  const seen = new Map<string, string[]>(addresses.map((a) => [a, []]));
  const held: (() => void)[] = [];
  for (let attempt = 0; attempt < 20; attempt++) {
    const servers: http.Server[] = [];
    try {
      let port = 0;
      for (const address of addresses) {
        const server = http.createServer((req, res) => {
          seen.get(address)!.push(req.url!);
          const answer = () => res.end(address);
          if (req.url === '/slow') held.push(answer);
          else answer();
        });
        servers.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(port, address, resolve);
        });
        port = (server.address() as AddressInfo).port;
      }
      const close = async () => {
        for (const s of servers) s.closeAllConnections();
        await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
      };
      return { port, seen, held, close };
    } catch {
      // The port the first address got was taken on another: try a new one.
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    }
  }
  throw new Error(`no port free on all of ${addresses.join(', ')}`);
}

function clusterConfig(port: number, extra = ''): ClusterConfig {
  const loaded = loadConfigText(
    [
      'listeners: [{ port: 0, routes: [{ match: { prefix: / }, cluster: app }] }]',
      'clusters:',
      '  - name: app',
      `    dns: { name: app.test, port: ${port}, refreshInterval: 20ms }`,
      ...extra.split('\n').filter((l) => l !== '').map((l) => `    ${l}`),
    ].join('\n'),
    'test.yaml',
  );
  if (!loaded.ok) throw new Error(loaded.errors.map(formatConfigError).join('\n'));
  return loaded.config.clusters[0]!;
}

/** A request through an endpoint's pool, counted as the proxy counts it. */
async function send(endpoint: Endpoint, path = '/'): Promise<string> {
  endpoint.begin();
  try {
    const res = await endpoint.pool.request({ method: 'GET', path });
    return await res.body.text();
  } finally {
    endpoint.end();
  }
}

const pickAny = (runtime: ClusterRuntime) => runtime.cluster.pick({ headers: {}, clientIp: '127.0.0.1' });
const keys = (runtime: ClusterRuntime) => runtime.cluster.endpoints.map((e) => e.key);

let upstreams: Upstreams | undefined;
let runtime: ClusterRuntime | undefined;
let tandem: RunningTandem | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await tandem?.close();
  if (runtime !== undefined) await closeCluster(runtime);
  await upstreams?.close();
  tandem = runtime = upstreams = undefined;
});

const localhost = await lookupAll('localhost');

describe('the real resolver (getaddrinfo, so /etc/hosts)', () => {
  it('resolves localhost to its loopback addresses', () => {
    expect(localhost).toContain('127.0.0.1');
    for (const address of localhost) expect(['127.0.0.1', '::1']).toContain(address);
  });

  it('tandem sends requests to every address localhost resolves to', async () => {
    expect(await answeringAddresses(localhost)).toEqual([...localhost].sort());
  });

  it.skipIf(!localhost.includes('::1'))(
    'localhost as both 127.0.0.1 and ::1 reaches upstreams on both (skipped where /etc/hosts maps localhost to 127.0.0.1 only)',
    async () => {
      expect(await answeringAddresses(['127.0.0.1', '::1'])).toEqual(['127.0.0.1', '::1']);
    },
  );
});

/** Upstreams on `addresses` at one port, tandem with `dns: { name: localhost }`: the addresses that answered through it. */
async function answeringAddresses(addresses: readonly string[]): Promise<string[]> {
  upstreams = await startUpstreams(addresses);
  tandem = await startTandem(`
listeners:
  - { address: 127.0.0.1, port: 0, routes: [{ match: { prefix: / }, cluster: app }] }
clusters:
  - name: app
    dns: { name: localhost, port: ${upstreams.port} }
`);
  // The first resolution runs right after start: until it lands requests may get 503.
  const answered = new Set<string>();
  await eventually(async () => {
    const res = await request(`${tandem!.url}/x`);
    const body = await res.body.text();
    if (res.statusCode === 200) answered.add(body);
    return answered.size === addresses.length;
  });
  return [...answered].sort();
}

describe('DNS discovery with an injected resolver', () => {
  it('an IPv4 and an IPv6 address on the same port are two endpoints, both reached', async () => {
    upstreams = await startUpstreams(['127.0.0.1', '::1']);
    runtime = compile(clusterConfig(upstreams.port), new Metrics(), async () => ['::1', '127.0.0.1']);
    expect(await eventually(() => runtime!.cluster.endpoints.length === 2)).toBe(true);
    expect(keys(runtime)).toEqual([`127.0.0.1:${upstreams.port}`, `[::1]:${upstreams.port}`]);
    const bodies = [await send(pickAny(runtime)!), await send(pickAny(runtime)!)];
    expect(bodies.sort()).toEqual(['127.0.0.1', '::1']);
  });

  it('has no endpoints until the first resolution succeeds', async () => {
    let answer: (addresses: string[]) => void = () => {};
    const pending = new Promise<string[]>((resolve) => (answer = resolve));
    upstreams = await startUpstreams(['127.0.0.1']);
    runtime = compile(clusterConfig(upstreams.port), new Metrics(), () => pending);
    expect(runtime.cluster.endpoints).toEqual([]);
    expect(pickAny(runtime)).toBeUndefined();
    answer(['127.0.0.1']);
    expect(await eventually(() => pickAny(runtime!) !== undefined)).toBe(true);
    expect(await send(pickAny(runtime)!)).toBe('127.0.0.1');
  });

  it('a refresh that drops an endpoint lets its in-flight request finish, then closes it; the one that stays is the same object', async () => {
    upstreams = await startUpstreams(['127.0.0.1', '::1']);
    let answer = ['127.0.0.1', '::1'];
    runtime = compile(clusterConfig(upstreams.port), new Metrics(), async () => answer);
    expect(await eventually(() => runtime!.cluster.endpoints.length === 2)).toBe(true);
    const [v4, v6] = runtime.cluster.endpoints as [Endpoint, Endpoint];

    const slow = send(v6, '/slow');
    expect(await eventually(() => upstreams!.held.length === 1)).toBe(true);
    answer = ['127.0.0.1'];
    expect(await eventually(() => runtime!.cluster.endpoints.length === 1)).toBe(true);

    expect(runtime.cluster.endpoints[0]).toBe(v4);
    expect(v6.available).toBe(false);
    expect(runtime.cluster.activeRequests).toBe(1);
    for (let i = 0; i < 5; i++) expect(pickAny(runtime)).toBe(v4);

    upstreams.held[0]!();
    expect(await slow).toBe('::1');
    expect(await eventually(() => v6.pool.destroyed)).toBe(true);
    expect(v4.pool.closed).toBe(false);
    expect(runtime.cluster.activeRequests).toBe(0);

    // Back again: a new endpoint object with a pool of its own.
    answer = ['127.0.0.1', '::1'];
    expect(await eventually(() => runtime!.cluster.endpoints.length === 2)).toBe(true);
    const back = runtime.cluster.endpoints.find((e) => e.key === v6.key)!;
    expect(back).not.toBe(v6);
    expect(await send(back)).toBe('::1');
  });

  it('a failing resolution keeps the last good set and is logged once per failure streak', async () => {
    const warn = vi.spyOn(log, 'warn').mockImplementation(() => {});
    const info = vi.spyOn(log, 'info').mockImplementation(() => {});
    upstreams = await startUpstreams(['127.0.0.1']);
    let calls = 0;
    let fail: 'no' | 'throw' | 'empty' = 'no';
    const resolve: Resolver = async () => {
      calls++;
      if (fail === 'throw') throw Object.assign(new Error('getaddrinfo ENOTFOUND app.test'), { code: 'ENOTFOUND' });
      return fail === 'empty' ? [] : ['127.0.0.1'];
    };
    runtime = compile(clusterConfig(upstreams.port), new Metrics(), resolve);
    expect(await eventually(() => runtime!.cluster.endpoints.length === 1)).toBe(true);
    const endpoint = runtime.cluster.endpoints[0]!;

    fail = 'throw';
    const before = calls;
    expect(await eventually(() => calls >= before + 4)).toBe(true);
    expect(runtime.cluster.endpoints).toEqual([endpoint]);
    expect(await send(pickAny(runtime)!)).toBe('127.0.0.1');
    const failures = warn.mock.calls.filter(([, message]) => message === 'dns resolution failed: keeping the last endpoints');
    expect(failures).toHaveLength(1);
    expect(failures[0]![0]).toMatchObject({ cluster: 'app', name: 'app.test', err: 'getaddrinfo ENOTFOUND app.test' });

    fail = 'no';
    expect(await eventually(() => info.mock.calls.some(([, message]) => message === 'dns resolution succeeded again'))).toBe(true);
    fail = 'empty';
    expect(await eventually(() => warn.mock.calls.length === 2)).toBe(true);
    expect(warn.mock.calls[1]![0]).toMatchObject({ err: 'app.test has no addresses' });
    expect(runtime.cluster.endpoints).toEqual([endpoint]);
  });

  it('health checks and outlier detection follow the new list; a removed endpoint loses its health series', async () => {
    upstreams = await startUpstreams(['127.0.0.1', '::1']);
    const metrics = new Metrics();
    let answer = ['127.0.0.1', '::1'];
    runtime = compile(
      clusterConfig(upstreams.port, 'healthCheck: { path: /healthz, interval: 20ms }\noutlierDetection: { consecutive5xx: 1, maxEjectionPercent: 100 }'),
      metrics,
      async () => answer,
    );
    expect(await eventually(() => runtime!.cluster.endpoints.length === 2)).toBe(true);
    const v6Key = `[::1]:${upstreams.port}`;
    const series = `tandem_endpoint_healthy{cluster="app",endpoint="${v6Key}"} 1`;
    expect(await metrics.render()).toContain(series);
    const firstHealth = runtime.health;
    // the new checker probes the discovered endpoints
    expect(await eventually(() => upstreams!.seen.get('::1')!.includes('/healthz'))).toBe(true);

    answer = ['127.0.0.1'];
    expect(await eventually(() => runtime!.cluster.endpoints.length === 1)).toBe(true);
    expect(runtime.health).not.toBe(firstHealth);
    expect(await metrics.render()).not.toContain(v6Key);
    const probesOfV6 = upstreams.seen.get('::1')!.length;
    const probesOfV4 = upstreams.seen.get('127.0.0.1')!.length;
    expect(await eventually(() => upstreams!.seen.get('127.0.0.1')!.length > probesOfV4 + 2)).toBe(true);
    expect(upstreams.seen.get('::1')!.length).toBeLessThanOrEqual(probesOfV6 + 1);

    // The detector counts the remaining endpoint alone: one failure ejects it (the cap is 100% of 1).
    const v4 = runtime.cluster.endpoints[0]!;
    runtime.outlier!.report(v4, true);
    expect(v4.ejected).toBe(true);
    expect(pickAny(runtime)).toBeUndefined();
  });

  it('an ejected endpoint that leaves no longer counts against maxEjectionPercent', async () => {
    upstreams = await startUpstreams(['127.0.0.1', '::1']);
    let answer = ['127.0.0.1', '::1'];
    runtime = compile(
      clusterConfig(upstreams.port, 'outlierDetection: { consecutive5xx: 1, maxEjectionPercent: 50 }'),
      new Metrics(),
      async () => answer,
    );
    expect(await eventually(() => runtime!.cluster.endpoints.length === 2)).toBe(true);
    const [v4, v6] = runtime.cluster.endpoints as [Endpoint, Endpoint];
    vi.spyOn(log, 'warn').mockImplementation(() => {});
    runtime.outlier!.report(v6, true);
    runtime.outlier!.report(v4, true);
    // one of two is the cap
    expect([v4.ejected, v6.ejected]).toEqual([false, true]);
    answer = ['127.0.0.1'];
    expect(await eventually(() => runtime!.cluster.endpoints.length === 1)).toBe(true);
    runtime.outlier!.report(v4, true);
    expect(v4.ejected).toBe(true);
  });

  it('skips zone-scoped IPv6 addresses, which no origin URL can name', async () => {
    upstreams = await startUpstreams(['127.0.0.1']);
    runtime = compile(clusterConfig(upstreams.port), new Metrics(), async () => ['fe80::1%lo', '127.0.0.1']);
    expect(await eventually(() => runtime!.cluster.endpoints.length === 1)).toBe(true);
    expect(keys(runtime)).toEqual([`127.0.0.1:${upstreams.port}`]);
  });

  it('an answer that cannot be applied is logged and applied again at the next refresh', async () => {
    const error = vi.spyOn(log, 'error').mockImplementation(() => {});
    const applied: string[][] = [];
    const discovery = new DnsDiscovery(
      'app',
      { name: 'app.test', port: 80, refreshInterval: 10 },
      (list) => {
        applied.push(list.map((e) => e.address));
        if (applied.length === 1) throw new Error('pool refused');
      },
      async () => ['10.0.0.1'],
    );
    discovery.start();
    try {
      expect(await eventually(() => applied.length === 2)).toBe(true);
      expect(applied).toEqual([['10.0.0.1'], ['10.0.0.1']]);
      expect(error).toHaveBeenCalledTimes(1);
      expect(error.mock.calls[0]![0]).toMatchObject({ cluster: 'app', err: 'pool refused' });
      // applied once it worked: the same answer is not handed over again
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(applied).toHaveLength(2);
    } finally {
      discovery.close();
    }
  });

  it('closing the cluster stops the refreshes', async () => {
    upstreams = await startUpstreams(['127.0.0.1']);
    let calls = 0;
    runtime = compile(clusterConfig(upstreams.port), new Metrics(), async () => {
      calls++;
      return ['127.0.0.1'];
    });
    expect(await eventually(() => calls >= 2)).toBe(true);
    await closeCluster(runtime);
    const after = calls;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toBe(after);
    runtime = undefined;
  });
});
