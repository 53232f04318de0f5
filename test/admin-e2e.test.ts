// The admin API of a running tandem (CONTRACT §7, §8), read after real
// traffic went through the listener.

import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  eventually,
  metricValue,
  simpleConfig,
  startTandem,
  startUpstream,
  useCleanup,
  type RunningTandem,
  type Upstream,
} from './support/harness.js';

const cleanup = useCleanup();
let t: RunningTandem | undefined;

/** `/slow` is answered only when `release()` is called; anything else at once. */
async function gatedUpstream(): Promise<{ up: Upstream; release(): void }> {
  const waiting: (() => void)[] = [];
  const up = await startUpstream((req, res) => {
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`done ${req.url}`);
    };
    if (req.url === '/slow') waiting.push(answer);
    else answer();
  });
  cleanup.add(up);
  return { up, release: () => waiting.splice(0).forEach((f) => f()) };
}

async function get(path: string): Promise<number> {
  const res = await request(`${t!.url}${path}`);
  await res.body.text();
  return res.statusCode;
}

async function adminJson<T>(path: string): Promise<T> {
  const res = await fetch(`${t!.adminUrl}${path}`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return (await res.json()) as T;
}

interface ClusterView {
  name: string;
  breaker: string;
  panic: boolean;
  endpoints: { address: string; port: number; healthy: boolean; ejected: boolean; activeRequests: number }[];
}

describe('admin API after traffic', () => {
  it('/metrics counts requests per listener, route and code, and upstream attempts', async () => {
    const { up } = await gatedUpstream();
    t = cleanup.add(await startTandem(
      simpleConfig([up.port]).replace('match: { prefix: / }', 'match: { prefix: /app }'),
    ));
    for (let i = 0; i < 3; i++) expect(await get('/app/x')).toBe(200);
    expect(await get('/elsewhere')).toBe(404);
    // metrics are written when each response closes, a moment after the client got it
    const labels = { listener: 'inbound', route: 'all', code: '200' };
    expect(await eventuallyMetric(() => metricValue(t!.adminUrl, 'tandem_requests_total', labels), 3)).toBe(true);
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { listener: 'inbound', route: 'no_route', code: '404' })).toBe(1);
    expect(await metricValue(t.adminUrl, 'tandem_request_duration_seconds_count', { listener: 'inbound', route: 'all' })).toBe(3);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '200' })).toBe(3);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_request_duration_seconds_count', { cluster: 'app' })).toBe(3);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_active_requests', { cluster: 'app' })).toBe(0);
  });

  it('/metrics is Prometheus text and includes the process metrics with the tandem_ prefix', async () => {
    const { up } = await gatedUpstream();
    t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const res = await fetch(`${t.adminUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    expect(text).toMatch(/^# TYPE tandem_requests_total counter$/m);
    expect(text).toMatch(/^# TYPE tandem_upstream_active_requests gauge$/m);
    expect(text).toMatch(/^tandem_process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^tandem_process_resident_memory_bytes \d/m);
    expect(text).toMatch(/^tandem_nodejs_heap_size_used_bytes \d/m);
    expect(text).not.toMatch(/^process_cpu_user_seconds_total/m);
  });

  it('active requests show in /clusters and the gauge while in flight, and return to 0', async () => {
    const gate = await gatedUpstream();
    t = cleanup.add(await startTandem(simpleConfig([gate.up.port])));
    const pending = get('/slow');
    expect(await eventually(() => gate.up.seen.length === 1)).toBe(true);

    const during = await adminJson<ClusterView[]>('/clusters');
    expect(during).toEqual([
      {
        name: 'app',
        breaker: 'closed',
        panic: false,
        endpoints: [{ address: '127.0.0.1', port: gate.up.port, healthy: true, ejected: false, activeRequests: 1 }],
      },
    ]);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_active_requests', { cluster: 'app' })).toBe(1);

    gate.release();
    expect(await pending).toBe(200);
    expect(await eventuallyMetric(() => metricValue(t!.adminUrl, 'tandem_upstream_active_requests', { cluster: 'app' }), 0)).toBe(true);
    const after = await adminJson<ClusterView[]>('/clusters');
    expect(after[0]!.endpoints[0]!.activeRequests).toBe(0);
  });

  it('/config shows version 1, an ISO loadedAt and durations and sizes as numbers', async () => {
    const { up } = await gatedUpstream();
    const before = Date.now();
    t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 2s', 'connectTimeout: 250ms')));
    const view = await adminJson<{
      version: number;
      loadedAt: string;
      config: {
        drain: { delay: number; timeout: number };
        listeners: { limits: { headersTimeout: number; maxHeaderBytes: number; idleTimeout: number }; routes: { timeout: number }[] }[];
        clusters: { connectTimeout: number; pool: { keepAliveTimeout: number } }[];
      };
    }>('/config');
    expect(view.version).toBe(1);
    expect(new Date(view.loadedAt).toISOString()).toBe(view.loadedAt);
    expect(Date.parse(view.loadedAt)).toBeGreaterThanOrEqual(before - 5);
    expect(Date.parse(view.loadedAt)).toBeLessThanOrEqual(Date.now());
    expect(view.config.drain).toEqual({ delay: 0, timeout: 30_000 });
    expect(view.config.listeners[0]!.routes[0]!.timeout).toBe(2000);
    expect(view.config.listeners[0]!.limits).toMatchObject({ headersTimeout: 10_000, maxHeaderBytes: 61_440, idleTimeout: 60_000 });
    expect(view.config.clusters[0]!.connectTimeout).toBe(250);
    expect(view.config.clusters[0]!.pool.keepAliveTimeout).toBe(4000);
  });

  it('/ready and /live answer 200 once the listeners are bound; state-changing endpoints refuse GET', async () => {
    const { up } = await gatedUpstream();
    t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const ready = await fetch(`${t.adminUrl}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('ready');
    expect((await fetch(`${t.adminUrl}/live`)).status).toBe(200);
    expect((await fetch(`${t.adminUrl}/reload`)).status).toBe(405);
    expect((await fetch(`${t.adminUrl}/nope`)).status).toBe(404);
  });
});

/** Polls a metric until it equals `want` (within 2 s). */
async function eventuallyMetric(read: () => Promise<number | undefined>, want: number): Promise<boolean> {
  const deadline = Date.now() + 2000;
  for (;;) {
    if ((await read()) === want) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
