// The resilience machinery end to end (docs/resilience.md): concurrency
// limits, the error-rate breaker, outlier detection, health checks and the
// retry limits, each against real upstreams that refuse, fail or hang.

import { describe, expect, it } from 'vitest';
import {
  deadPort,
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
} from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';

const cleanup = useCleanup();
let t: RunningTandem | undefined;

async function upstream(handler: Parameters<typeof startUpstream>[0]): Promise<Upstream> {
  const u = await startUpstream(handler);
  cleanup.add(u);
  return u;
}

const failing = (status = 503) =>
  upstream((_req, res) => {
    res.writeHead(status);
    res.end('app says no');
  });

describe.each(PROTOCOLS)('over %s', (protocol) => {
  const client = clientFor(protocol, cleanup);

  async function get(path = '/'): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
    const res = await client.request(`${t!.url}${path}`);
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
  }

  /** An upstream whose /healthz answers 200 while `health.ok`, 503 otherwise; any other path 200. */
  async function checkedUpstream(ok: boolean): Promise<{ app: Upstream; health: { ok: boolean } }> {
    const health = { ok };
    const app = await upstream((req, res) => {
      if (req.url === '/healthz') res.writeHead(health.ok ? 200 : 503);
      res.end('x');
    });
    return { app, health };
  }

  /** Probes every 50 ms; `unhealthyThreshold` failed ones take the endpoint out, one good one brings it back. */
  const healthCheck = (unhealthyThreshold: number): string =>
    `healthCheck: { path: /healthz, interval: 50ms, timeout: 40ms, unhealthyThreshold: ${unhealthyThreshold}, healthyThreshold: 1 }`;

  /** True once the health checks have taken cluster app's endpoint out of rotation (within 3 s). */
  const checkedOut = (): Promise<boolean> =>
    eventually(async () => (await metricValue(t!.adminUrl, 'tandem_endpoint_healthy', { cluster: 'app' })) === 0, 3000);

  describe('concurrency limits', () => {
    it('maxRequests: a request over the limit gets 503 overflow at once and never reaches the upstream', async () => {
      const held: (() => void)[] = [];
      const slow = await upstream((_req, res) => held.push(() => res.end('late')));
      t = cleanup.add(await startTandem(simpleConfig([slow.port], '', 'circuitBreaker: { maxRequests: 1 }')));
      const first = client.request(`${t.url}/a`);
      expect(await eventually(() => held.length === 1)).toBe(true);
      const second = await client.request(`${t.url}/b`);
      await expectTandemError(second, 503, 'overflow');
      expect(slow.seen.map((s) => s.url)).toEqual(['/a']);
      held[0]!();
      expect((await first).statusCode).toBe(200);
      // the slot is free again
      const third = client.request(`${t.url}/c`);
      expect(await eventually(() => held.length === 2)).toBe(true);
      held[1]!();
      expect((await third).statusCode).toBe(200);
      expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'overflow' })).toBe(1);
      const log = await waitForAccessLog(t, 3);
      expect(log.find((l) => l.path === '/b')).toMatchObject({ status: 503, flags: ['UO'], attempts: 0 });
    });

    it('maxRetries: 0 skips every counted retry and the last answer goes back', async () => {
      const bad = await failing(503);
      t = cleanup.add(await startTandem(
        simpleConfig([bad.port], 'retries: { attempts: 2, retryOn: [5xx] }', 'circuitBreaker: { maxRetries: 0 }'),
      ));
      const res = await get();
      expect(res.status).toBe(503);
      expect(res.body).toBe('app says no');
      expect(bad.seen).toHaveLength(1);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(0);
      expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'retry_budget' })).toBe(1);
    });

    it("hands a retry's slot on to the request's next retry: maxRetries 1 still allows every attempt of one request", async () => {
      const bad = await failing(503);
      t = cleanup.add(await startTandem(
        simpleConfig([bad.port], 'retries: { attempts: 3, retryOn: [5xx], backoff: { base: 1ms, max: 2ms } }', 'circuitBreaker: { maxRetries: 1 }'),
      ));
      expect((await get()).status).toBe(503);
      expect(bad.seen).toHaveLength(4);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(3);
      expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'retry_budget' })).toBe(0);
    });
  });

  describe('retry budget', () => {
    /**
     * Four GETs at once against an upstream that answers every first try 503
     * once all four are in, and holds every retry until `release()`: the
     * retries in flight are exactly those granted.
     */
    async function fourAtOnce(clusterExtra: string) {
      const held: (() => void)[] = [];
      const firsts: (() => void)[] = [];
      const tries = new Map<string, number>();
      const app = await upstream((req, res) => {
        const id = String(req.headers['x-request-id']);
        const n = (tries.get(id) ?? 0) + 1;
        tries.set(id, n);
        if (n > 1) return void held.push(() => res.end('retried'));
        firsts.push(() => res.writeHead(503).end('first'));
        if (firsts.length === 4) for (const answer of firsts) answer();
      });
      t = cleanup.add(await startTandem(
        simpleConfig([app.port], 'retries: { attempts: 1, retryOn: [5xx], backoff: { base: 1ms, max: 2ms } }', clusterExtra),
      ));
      const answers = [1, 2, 3, 4].map((i) => client.request(`${t!.url}/r${i}`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() })));
      return { app, held, answers };
    }

    const rejected = () => metricValue(t!.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'retry_budget' });

    it('skips a retry over percent of the requests in flight: the last answer goes back, counted as retry_budget', async () => {
      // 4 requests in flight: max(1, floor(50% x 4)) = 2 retries in flight
      const { app, held, answers } = await fourAtOnce('circuitBreaker: { maxRetries: 100 }\nretryBudget: { percent: 50, minConcurrency: 1 }');
      expect(await eventually(async () => (await rejected()) === 2 && held.length === 2)).toBe(true);
      for (const release of held) release();
      const got = await Promise.all(answers);
      expect(got.map((a) => `${a.status} ${a.body}`).sort()).toEqual(['200 retried', '200 retried', '503 first', '503 first']);
      expect(app.seen).toHaveLength(6);
      expect(await metricValue(t!.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(2);
      const log = await waitForAccessLog(t!, 4);
      expect(log.filter((l) => l.status === 503).map((l) => [l.attempts, l.flags])).toEqual([[1, []], [1, []]]);
    });

    it('keeps maxRetries a hard cap under a budget that would allow more', async () => {
      const { app, held, answers } = await fourAtOnce('circuitBreaker: { maxRetries: 1 }\nretryBudget: { percent: 100, minConcurrency: 10 }');
      expect(await eventually(async () => (await rejected()) === 3 && held.length === 1)).toBe(true);
      held[0]!();
      const got = await Promise.all(answers);
      expect(got.map((a) => a.status).sort()).toEqual([200, 503, 503, 503]);
      expect(app.seen).toHaveLength(5);
    });

    it('minConcurrency allows that many retries in flight however few requests there are', async () => {
      // floor(20% x 4) = 0, but 3 retries may always be in flight
      const { held, answers } = await fourAtOnce('circuitBreaker: { maxRetries: 100 }\nretryBudget: { percent: 20, minConcurrency: 3 }');
      expect(await eventually(async () => (await rejected()) === 1 && held.length === 3)).toBe(true);
      for (const release of held) release();
      expect((await Promise.all(answers)).map((a) => a.status).sort()).toEqual([200, 200, 200, 503]);
    });

    it('/config shows the budget, the defaults when absent', async () => {
      const app = await upstream((_req, res) => res.end());
      t = cleanup.add(await startTandem(simpleConfig([app.port], '', 'retryBudget: { percent: 35.5 }')));
      const view = (await (await fetch(`${t.adminUrl}/config`)).json()) as { config: { clusters: { retryBudget: unknown }[] } };
      expect(view.config.clusters[0]!.retryBudget).toEqual({ percent: 35.5, minConcurrency: 3 });
    });
  });

  describe('error-rate breaker', () => {
    it('opens over the threshold, answers circuit_open without the upstream, then a half-open trial closes it', async () => {
      let healthy = false;
      const app = await upstream((_req, res) => {
        res.writeHead(healthy ? 200 : 500);
        res.end();
      });
      t = cleanup.add(await startTandem(
        simpleConfig(
          [app.port],
          '',
          'circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 4, window: 10s, resetTimeout: 300ms }',
        ),
      ));
      for (let i = 0; i < 4; i++) expect((await get()).status).toBe(500);
      const rejected = await client.request(`${t.url}/`);
      await expectTandemError(rejected, 503, 'circuit_open');
      expect(app.seen).toHaveLength(4);
      expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(1);
      const clusters = (await (await fetch(`${t.adminUrl}/clusters`)).json()) as { breaker: string }[];
      expect(clusters[0]!.breaker).toBe('open');

      healthy = true;
      await new Promise((r) => setTimeout(r, 450));
      expect((await get()).status).toBe(200); // the trial
      expect((await get()).status).toBe(200);
      expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(0);
      expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'open' })).toBe(1);
    });

    it("tandem's own 503 no_healthy_upstream gives no verdict: the breaker stays closed and serves as soon as an endpoint is back", async () => {
      const { app, health } = await checkedUpstream(false);
      t = cleanup.add(await startTandem(
        simpleConfig(
          [app.port],
          '',
          `${healthCheck(1)}\ncircuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 4, window: 10s, resetTimeout: 30s }`,
        ),
      ));
      expect(await checkedOut()).toBe(true);
      for (let i = 0; i < 6; i++) await expectTandemError(await client.request(`${t.url}/work`), 503, 'no_healthy_upstream');
      expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(0);
      health.ok = true;
      expect(await eventually(async () => (await get('/work')).status === 200, 3000)).toBe(true);
      expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_rejections_total', { cluster: 'app', reason: 'open' })).toBe(0);
    });

    it('stays closed when failures do not exceed the threshold', async () => {
      let n = 0;
      const app = await upstream((_req, res) => {
        res.writeHead(n++ % 2 === 1 ? 500 : 200); // 200, 500, 200, ...: never over half
        res.end();
      });
      t = cleanup.add(await startTandem(simpleConfig([app.port], '', 'circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 4 }')));
      for (let i = 0; i < 10; i++) await get();
      expect(app.seen).toHaveLength(10);
    });
  });

  describe('outlier detection', () => {
    it('ejects an endpoint after consecutive failures: no traffic reaches it during the ejection', async () => {
      const bad = await failing(503);
      const good = await upstream((_req, res) => res.end('fine'));
      t = cleanup.add(await startTandem(
        simpleConfig(
          [bad.port, good.port],
          '',
          'outlierDetection: { consecutive5xx: 2, baseEjectionTime: 2s, maxEjectionPercent: 50 }',
        ),
      ));
      // round robin: every other request reaches the bad endpoint until it is ejected
      for (let i = 0; i < 4; i++) await get();
      expect(bad.seen).toHaveLength(2);
      for (let i = 0; i < 10; i++) expect((await get()).status).toBe(200);
      expect(bad.seen).toHaveLength(2);
      expect(await metricValue(t.adminUrl, 'tandem_outlier_ejections_total', { cluster: 'app' })).toBe(1);
      const clusters = (await (await fetch(`${t.adminUrl}/clusters`)).json()) as { endpoints: { port: number; ejected: boolean }[] }[];
      expect(clusters[0]!.endpoints.find((e) => e.port === bad.port)!.ejected).toBe(true);
    });

    it('connect failures count: a dead endpoint is ejected and the retry finds the live one', async () => {
      const good = await upstream((_req, res) => res.end('fine'));
      const dead = await deadPort();
      t = cleanup.add(await startTandem(simpleConfig([dead, good.port], '', 'outlierDetection: { consecutive5xx: 1, baseEjectionTime: 5s }')));
      for (let i = 0; i < 6; i++) expect((await get()).status).toBe(200);
      const log = await waitForAccessLog(t, 6);
      // only the first request met the dead endpoint (then retried on the live one)
      expect(log.map((l) => l.attempts)).toEqual([2, 1, 1, 1, 1, 1]);
    });
  });

  describe('health checks', () => {
    it('an endpoint failing its checks leaves the rotation; with none left: 503 no_healthy_upstream', async () => {
      const { app, health } = await checkedUpstream(true);
      t = cleanup.add(await startTandem(simpleConfig([app.port], '', healthCheck(2))));
      expect((await get('/work')).status).toBe(200);
      health.ok = false;
      expect(await checkedOut()).toBe(true);
      const res = await client.request(`${t.url}/work`);
      await expectTandemError(res, 503, 'no_healthy_upstream');
      expect((await waitForAccessLog(t, 2)).at(-1)).toMatchObject({ flags: ['UH'] });
      health.ok = true;
      expect(await eventually(async () => (await get('/work')).status === 200, 3000)).toBe(true);
      expect(app.seen.filter((s) => s.url === '/healthz').every((s) => s.headers['user-agent'] === 'tandem-health-check')).toBe(true);
    });
  });

  describe('retry backoff', () => {
    it("honours the upstream's Retry-After on a 503 as the backoff", async () => {
      const times: number[] = [];
      const app = await upstream((_req, res) => {
        times.push(Date.now());
        if (times.length === 1) res.writeHead(503, { 'retry-after': '1' });
        res.end();
      });
      t = cleanup.add(await startTandem(simpleConfig([app.port], 'retries: { attempts: 1, retryOn: [5xx], backoff: { base: 1ms, max: 2ms } }')));
      expect((await get()).status).toBe(200);
      expect(app.seen).toHaveLength(2);
      expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(950);
    });

    it('waits no longer than the backoff cap between tries', async () => {
      const times: number[] = [];
      const app = await upstream((_req, res) => {
        times.push(Date.now());
        res.writeHead(503);
        res.end();
      });
      t = cleanup.add(await startTandem(simpleConfig([app.port], 'retries: { attempts: 3, retryOn: [5xx], backoff: { base: 20ms, max: 40ms } }')));
      expect((await get()).status).toBe(503);
      expect(times).toHaveLength(4);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeLessThan(40 + 250);
    });
  });
});
