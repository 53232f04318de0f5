// Latency-aware balancing and the panic threshold end to end
// (docs/resilience.md), against real upstreams that are slow or fail their
// health checks.

import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import {
  simpleConfig,
  startTandem,
  startUpstream,
  useCleanup,
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
