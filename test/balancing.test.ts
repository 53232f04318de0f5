// Latency-aware balancing and the panic threshold end to end
// (docs/resilience.md), against real upstreams that are slow or fail their
// health checks.

import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  eventually,
  expectTandemError,
  metricValue,
  simpleConfig,
  startTandem,
  startUpstream,
  useCleanup,
  waitForAccessLog,
  type RunningTandem,
  type Upstream,
  type UpstreamHandler,
} from './support/harness.js';

const cleanup = useCleanup();
let t: RunningTandem | undefined;

async function upstream(handler: UpstreamHandler): Promise<Upstream> {
  const u = await startUpstream(handler);
  cleanup.add(u);
  return u;
}

const answerAfter = (ms: number): UpstreamHandler => (_req, res) => void setTimeout(() => res.end('ok'), ms);

async function status(path: string): Promise<number> {
  const res = await request(`${t!.url}${path}`);
  await res.body.dump();
  return res.statusCode;
}

/** `total` GETs, `concurrency` at a time; their statuses. */
async function load(total: number, concurrency: number): Promise<number[]> {
  const statuses: number[] = [];
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < total) {
      sent++;
      statuses.push(await status(`/r${sent}`));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

const appRequests = (u: Upstream) => u.seen.filter((s) => s.url !== '/healthz').length;

interface ClusterView {
  panic: boolean;
  endpoints: { healthy: boolean }[];
}

async function clusterView(): Promise<ClusterView> {
  const clusters = (await (await request(`${t!.adminUrl}/clusters`)).body.json()) as ClusterView[];
  return clusters[0]!;
}

/** Waits until /clusters shows these healthy flags, in endpoint order. */
async function healthIs(...healthy: boolean[]): Promise<boolean> {
  return eventually(async () => (await clusterView()).endpoints.every((e, i) => e.healthy === healthy[i]), 3000);
}

describe('peak_ewma', () => {
  it('sends most requests to the endpoint that answers 150 ms sooner', async () => {
    const fast = await upstream(answerAfter(0));
    const slow = await upstream(answerAfter(150));
    t = cleanup.add(await startTandem(simpleConfig([fast.port, slow.port], '', 'loadBalancing: peak_ewma')));
    const statuses = await load(80, 1);
    expect(statuses.every((s) => s === 200)).toBe(true);
    // Until its first answer the slow endpoint costs 0 and gets the next
    // request; after that the fast one wins every pick unless one of its own
    // answers took longer than 150 ms (a stall of the machine).
    expect(appRequests(slow)).toBeGreaterThanOrEqual(1);
    expect(appRequests(slow)).toBeLessThanOrEqual(4);
    expect(appRequests(fast)).toBe(80 - appRequests(slow));
    // /clusters shows the estimates the balancer compared
    const clusters = (await (await request(`${t.adminUrl}/clusters`)).body.json()) as { endpoints: { port: number; latencyEstimateMs: number }[] }[];
    const estimate = (u: Upstream) => clusters[0]!.endpoints.find((e) => e.port === u.port)!.latencyEstimateMs;
    expect(estimate(slow)).toBeGreaterThan(100);
    expect(estimate(fast)).toBeLessThan(estimate(slow));
  });

  it("weighs a try by the time to its answer's head: a long stream does not make its endpoint look slow", async () => {
    // The head at once, then the body over 600 ms.
    const streaming: UpstreamHandler = (_req, res) => {
      res.writeHead(200);
      res.write('start;');
      setTimeout(() => res.end('end'), 600);
    };
    const [a, b] = [await upstream(streaming), await upstream(streaming)];
    t = cleanup.add(await startTandem(simpleConfig([a.port, b.port], '', 'loadBalancing: peak_ewma')));
    const bodies = await Promise.all([1, 2, 3, 4].map(async (i) => (await request(`${t!.url}/stream${i}`)).body.text()));
    expect(bodies).toEqual(Array(4).fill('start;end'));
    expect(appRequests(a) + appRequests(b)).toBe(4);
    const clusters = (await (await request(`${t.adminUrl}/clusters`)).body.json()) as { endpoints: { latencyEstimateMs: number }[] }[];
    const estimates = clusters[0]!.endpoints.map((e) => e.latencyEstimateMs);
    // Timed to the end of the body, each would be about 600 ms.
    for (const ms of estimates) expect(ms).toBeLessThan(300);
    expect(Math.max(...estimates)).toBeGreaterThan(0);
  });

  it('round_robin on the same pair splits evenly (the baseline the test above beats)', async () => {
    const fast = await upstream(answerAfter(0));
    const slow = await upstream(answerAfter(150));
    t = cleanup.add(await startTandem(simpleConfig([fast.port, slow.port])));
    await load(24, 4);
    expect(appRequests(slow)).toBe(12);
    expect(appRequests(fast)).toBe(12);
  });
});

describe('panicThreshold', () => {
  const HEALTH = 'healthCheck: { path: /healthz, interval: 50ms, timeout: 40ms, unhealthyThreshold: 1, healthyThreshold: 1 }';
  /** Two endpoints whose health checks fail and whose requests succeed. */
  async function failingChecks(clusterExtra: string): Promise<[Upstream, Upstream]> {
    const handler: UpstreamHandler = (req, res) => {
      res.writeHead(req.url === '/healthz' ? 503 : 200);
      res.end('app');
    };
    const [a, b] = [await upstream(handler), await upstream(handler)];
    t = cleanup.add(await startTandem(simpleConfig([a.port, b.port], '', `${HEALTH}\n${clusterExtra}`)));
    expect(await healthIs(false, false)).toBe(true);
    return [a, b];
  }

  it('50: with every endpoint failing its health checks, requests still reach both endpoints', async () => {
    const [a, b] = await failingChecks('panicThreshold: 50');
    expect(await load(10, 1)).toEqual(Array(10).fill(200));
    expect(appRequests(a)).toBe(5);
    expect(appRequests(b)).toBe(5);
    expect(await clusterView()).toMatchObject({ panic: true, endpoints: [{ healthy: false }, { healthy: false }] });
    const log = await waitForAccessLog(t!, 10);
    expect(log.every((l) => l.status === 200 && (l.flags as string[]).length === 0)).toBe(true);
  });

  it('0 (the default): the same cluster answers 503 no_healthy_upstream', async () => {
    const [a, b] = await failingChecks('');
    await expectTandemError(await request(`${t!.url}/r`), 503, 'no_healthy_upstream');
    expect(appRequests(a) + appRequests(b)).toBe(0);
  });

  it('50: endpoints all ejected by outlier detection still get the requests, and their own answer goes back', async () => {
    const failing: UpstreamHandler = (_req, res) => {
      res.writeHead(500);
      res.end('app failed');
    };
    const [a, b] = [await upstream(failing), await upstream(failing)];
    const cluster = 'panicThreshold: 50\noutlierDetection: { consecutive5xx: 1, maxEjectionPercent: 100 }';
    t = cleanup.add(await startTandem(simpleConfig([a.port, b.port], 'retries: { attempts: 0 }', cluster)));
    expect(await load(2, 1)).toEqual([500, 500]);
    expect(await metricValue(t.adminUrl, 'tandem_outlier_ejections_total', { cluster: 'app' })).toBe(2);
    expect(await load(6, 1)).toEqual(Array(6).fill(500));
    expect(appRequests(a) + appRequests(b)).toBe(8);
    expect(appRequests(a)).toBeGreaterThanOrEqual(3);
  });

  it('at or above the threshold, unhealthy endpoints stay out of rotation', async () => {
    const ok: UpstreamHandler = (_req, res) => res.end('ok');
    const sick: UpstreamHandler = (req, res) => {
      res.writeHead(req.url === '/healthz' ? 503 : 200);
      res.end('sick');
    };
    const [good, bad] = [await upstream(ok), await upstream(sick)];
    t = cleanup.add(await startTandem(simpleConfig([good.port, bad.port], '', `${HEALTH}\npanicThreshold: 50`)));
    expect(await healthIs(true, false)).toBe(true);
    expect((await clusterView()).panic).toBe(false);
    // 1 of 2 healthy is 50%, not below it
    expect(await load(6, 1)).toEqual(Array(6).fill(200));
    expect(appRequests(bad)).toBe(0);
  });
});
