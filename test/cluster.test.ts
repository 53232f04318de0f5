import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../src/cluster/cluster.js';
import { Endpoint } from '../src/cluster/endpoint.js';
import type { ClusterConfig } from '../src/config/types.js';
import { request } from '../src/undici.js';

const POOL = { connectTimeout: 1000, pool: { connections: 4, keepAliveTimeout: 4000 } };

interface Backend {
  server: Server;
  port: number;
  openSockets: Set<Socket>;
}

/** Answers with its own port; `/slow` answers after 100 ms. */
async function startBackend(): Promise<Backend> {
  const openSockets = new Set<Socket>();
  const server = createServer((req, res) => {
    // the port is read now: a /slow answer may be written after the server stopped listening
    const port = String((server.address() as AddressInfo).port);
    const answer = () => res.end(port);
    if (req.url === '/slow') setTimeout(answer, 100);
    else answer();
  });
  server.on('connection', (socket) => {
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, openSockets };
}

const CIRCUIT_BREAKER_DEFAULTS = {
  maxRequests: 1024,
  maxPendingRequests: 1024,
  maxRetries: 3,
  volumeThreshold: 20,
  window: 10_000,
  resetTimeout: 30_000,
};

function clusterConfig(ports: number[]): ClusterConfig {
  return {
    name: 'app',
    endpoints: ports.map((port) => ({ address: '127.0.0.1', port, weight: 1 })),
    protocol: 'http1',
    loadBalancing: 'round_robin',
    panicThreshold: 0,
    ...POOL,
    circuitBreaker: CIRCUIT_BREAKER_DEFAULTS,
    retryBudget: { percent: 20, minConcurrency: 3 },
  };
}

async function get(endpoint: Endpoint, path = '/'): Promise<{ status: number; body: string }> {
  const response = await request(endpoint.pool, { path, method: 'GET' });
  return { status: response.statusCode, body: await response.body.text() };
}

/** Socket close events arrive a tick after the client closes: poll briefly. */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
}

describe('Endpoint', () => {
  const endpoints: Endpoint[] = [];
  afterEach(async () => {
    await Promise.all(endpoints.splice(0).map((endpoint) => endpoint.close()));
  });

  it('names itself host:port, bracketing IPv6 addresses', () => {
    const v4 = new Endpoint({ address: '127.0.0.1', port: 8080, weight: 2 }, POOL);
    const v6 = new Endpoint({ address: '::1', port: 8080, weight: 1 }, POOL);
    endpoints.push(v4, v6);
    expect([v4.key, v4.origin, v4.weight]).toEqual(['127.0.0.1:8080', 'http://127.0.0.1:8080', 2]);
    expect([v6.key, v6.origin]).toEqual(['[::1]:8080', 'http://[::1]:8080']);
  });

  it('counts in-flight requests without going below zero', () => {
    const endpoint = new Endpoint({ address: '127.0.0.1', port: 8080, weight: 1 }, POOL);
    endpoints.push(endpoint);
    endpoint.begin();
    endpoint.begin();
    endpoint.end();
    expect(endpoint.activeRequests).toBe(1);
    endpoint.end();
    endpoint.end();
    expect(endpoint.activeRequests).toBe(0);
  });

  it('is available only while healthy and not ejected', () => {
    const endpoint = new Endpoint({ address: '127.0.0.1', port: 8080, weight: 1 }, POOL);
    endpoints.push(endpoint);
    expect(endpoint.available).toBe(true);
    endpoint.ejected = true;
    expect(endpoint.available).toBe(false);
    endpoint.ejected = false;
    endpoint.healthy = false;
    expect(endpoint.available).toBe(false);
  });
});

describe('Cluster over real servers', () => {
  const backends: Backend[] = [];
  const clusters: Cluster[] = [];
  afterEach(async () => {
    await Promise.all(clusters.splice(0).map((cluster) => cluster.destroy()));
    await Promise.all(
      backends.splice(0).map((b) => new Promise((resolve) => b.server.close(resolve).closeAllConnections())),
    );
  });

  async function setUp(): Promise<{ cluster: Cluster; one: Backend; two: Backend }> {
    const one = await startBackend();
    const two = await startBackend();
    backends.push(one, two);
    const cluster = new Cluster(clusterConfig([one.port, two.port]));
    clusters.push(cluster);
    return { cluster, one, two };
  }

  it('reaches each endpoint through its own pool', async () => {
    const { cluster, one, two } = await setUp();
    const ctx = { headers: {}, clientIp: '127.0.0.1' };
    const first = cluster.pick(ctx)!;
    const second = cluster.pick(ctx)!;
    expect(cluster.name).toBe('app');
    expect([first.port, second.port]).toEqual([one.port, two.port]);
    expect(await get(first)).toEqual({ status: 200, body: String(one.port) });
    expect(await get(second)).toEqual({ status: 200, body: String(two.port) });
    expect(one.openSockets.size).toBe(1);
    expect(two.openSockets.size).toBe(1);
  });

  it('sums in-flight requests over its endpoints', async () => {
    const { cluster } = await setUp();
    cluster.endpoints[0]!.begin();
    cluster.endpoints[1]!.begin();
    cluster.endpoints[1]!.begin();
    expect(cluster.activeRequests).toBe(3);
  });

  it('close() lets an in-flight request finish, then closes every connection', async () => {
    const { cluster, one, two } = await setUp();
    await get(cluster.endpoints[1]!);
    const inFlight = get(cluster.endpoints[0]!, '/slow');
    await until(() => one.openSockets.size === 1);
    await cluster.close();
    expect(await inFlight).toEqual({ status: 200, body: String(one.port) });
    expect(cluster.endpoints.every((endpoint) => endpoint.pool.closed)).toBe(true);
    await until(() => one.openSockets.size + two.openSockets.size === 0);
    expect(one.openSockets.size + two.openSockets.size).toBe(0);
    await expect(get(cluster.endpoints[0]!)).rejects.toThrow();
  });

  it('destroy() aborts an in-flight request', async () => {
    const { cluster, one } = await setUp();
    const inFlight = get(cluster.endpoints[0]!, '/slow');
    await until(() => one.openSockets.size === 1);
    await cluster.destroy();
    await expect(inFlight).rejects.toThrow();
    expect(cluster.endpoints[0]!.pool.destroyed).toBe(true);
  });

  it('reports a refused connection as an error from the pool', async () => {
    const gone = await startBackend();
    await new Promise((resolve) => gone.server.close(resolve));
    const cluster = new Cluster(clusterConfig([gone.port]));
    clusters.push(cluster);
    await expect(get(cluster.endpoints[0]!)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
