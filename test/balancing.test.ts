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
    const statuses = await load(120, 4);
    expect(statuses.every((s) => s === 200)).toBe(true);
    // Until its first answer the slow endpoint costs 0 and takes what it is
    // offered (at most one request per client here); after that only the
    // fast one's queue could make it cheaper, and 4 clients never build one.
    expect(appRequests(slow)).toBeGreaterThanOrEqual(1);
    expect(appRequests(slow)).toBeLessThanOrEqual(8);
    expect(appRequests(fast)).toBe(120 - appRequests(slow));
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
