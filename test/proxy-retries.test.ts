// Configured retry policies (CONTRACT §4): which answers and failures are
// retried, for which methods, how often, where to, and what the client gets
// once the tries run out.

import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  eventually,
  expectTandemError,
  metricValue,
  simpleConfig,
  startTandem,
  startUpstream,
  useCleanup,
  waitForAccessLog,
  type Upstream,
} from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';

const cleanup = useCleanup();

const RETRY_5XX = 'retries: { attempts: 2, retryOn: [5xx], backoff: { base: 10ms, max: 50ms } }';

/** An upstream answering from a script, one status per request (the last one repeats). */
async function scripted(statuses: number[], label = 'app', delayMs = 0): Promise<Upstream> {
  let n = 0;
  const up = await startUpstream((_req, res, body) => {
    const status = statuses[Math.min(n, statuses.length - 1)]!;
    n++;
    const answer = `${label} try ${n} status ${status} body ${body.length}`;
    const headers = { 'content-type': 'text/plain', 'x-try': String(n) };
    if (delayMs === 0) res.writeHead(status, headers).end(answer);
    else setTimeout(() => res.writeHead(status, headers).end(answer), delayMs);
  });
  cleanup.add(up);
  return up;
}

function retries(adminUrl: string): Promise<number | undefined> {
  return metricValue(adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' });
}

describe.each(PROTOCOLS)('over %s', (protocol) => {
  const client = clientFor(protocol, cleanup);

  describe('retryOn 5xx', () => {
    it('retries a 503 and answers the 200 that follows', async () => {
      const up = await scripted([503, 200]);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY_5XX)));
      const res = await client.request(`${t.url}/a`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('app try 2 status 200 body 0');
      expect(up.seen).toHaveLength(2);
      // every try carries the same request id
      expect(up.seen[1]!.headers['x-request-id']).toBe(up.seen[0]!.headers['x-request-id']);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 2, flags: [], endpoint: `127.0.0.1:${up.port}` });
      expect(await retries(t.adminUrl)).toBe(1);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '503' })).toBe(1);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '200' })).toBe(1);
    });

    it('passes the last 503 through unchanged once the tries run out, flag URX', async () => {
      const up = await scripted([503]);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY_5XX)));
      const res = await client.request(`${t.url}/b`);
      expect(res.statusCode).toBe(503);
      expect(res.headers['x-tandem-error']).toBeUndefined();
      expect(res.headers['content-type']).toBe('text/plain');
      expect(res.headers['x-try']).toBe('3');
      expect(res.headers['x-request-id']).toBe(up.seen[0]!.headers['x-request-id']);
      expect(await res.body.text()).toBe('app try 3 status 503 body 0');
      expect(up.seen).toHaveLength(3);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 503, attempts: 3, flags: ['URX'] });
      expect(await retries(t.adminUrl)).toBe(2);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '503' })).toBe(3);
    });

    it('does not retry a 4xx', async () => {
      const up = await scripted([404, 200]);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY_5XX)));
      const res = await client.request(`${t.url}/c`);
      expect(res.statusCode).toBe(404);
      await res.body.text();
      expect(up.seen).toHaveLength(1);
      expect(await retries(t.adminUrl)).toBe(0);
    });

    it('does not retry a POST', async () => {
      const up = await scripted([503, 200]);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY_5XX)));
      const res = await client.request(`${t.url}/d`, { method: 'POST', body: 'payload' });
      expect(res.statusCode).toBe(503);
      expect(await res.body.text()).toBe('app try 1 status 503 body 7');
      expect(up.seen).toHaveLength(1);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 503, attempts: 1, flags: [] });
      expect(await retries(t.adminUrl)).toBe(0);
    });

    it('retries a POST with its body when retryNonIdempotent is set', async () => {
      const up = await scripted([503, 200]);
      const t = cleanup.add(await startTandem(
        simpleConfig([up.port], 'retries: { attempts: 2, retryOn: [5xx], retryNonIdempotent: true, backoff: { base: 10ms, max: 50ms } }'),
      ));
      const res = await client.request(`${t.url}/e`, { method: 'POST', body: 'payload' });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('app try 2 status 200 body 7');
      expect(up.seen.map((s) => s.body)).toEqual(['payload', 'payload']);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 2 });
      expect(await retries(t.adminUrl)).toBe(1);
    });

    it('counts a resent body once in bytesIn', async () => {
      const up = await scripted([503, 503, 200]);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY_5XX)));
      const res = await client.request(`${t.url}/bytes`, { method: 'PUT', body: '12345678' });
      expect(res.statusCode).toBe(200);
      await res.body.text();
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 3, bytesIn: 8 });
    });

    it('streams a body over bufferLimit and never retries it', async () => {
      const up = await scripted([503, 200]);
      const t = cleanup.add(await startTandem(
        simpleConfig([up.port], 'retries: { attempts: 2, retryOn: [5xx], retryNonIdempotent: true, bufferLimit: 1KiB, backoff: { base: 10ms, max: 50ms } }'),
      ));
      const res = await client.request(`${t.url}/big`, { method: 'POST', body: 'b'.repeat(2000) });
      expect(res.statusCode).toBe(503);
      expect(await res.body.text()).toBe('app try 1 status 503 body 2000');
      expect(up.seen).toHaveLength(1);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 503, attempts: 1, bytesIn: 2000, flags: [] });
    });

    it('retries a PUT (idempotent) with its body', async () => {
      const up = await scripted([500, 200]);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY_5XX)));
      const res = await client.request(`${t.url}/put`, { method: 'PUT', body: 'x'.repeat(1000) });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('app try 2 status 200 body 1000');
      expect(up.seen.map((s) => s.body.length)).toEqual([1000, 1000]);
    });

    it('sends the retry to the other endpoint when there is one', async () => {
      const a = await scripted([503], 'a');
      const b = await scripted([200], 'b');
      const t = cleanup.add(await startTandem(simpleConfig([a.port, b.port], RETRY_5XX)));
      const res = await client.request(`${t.url}/f`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('b try 1 status 200 body 0');
      expect(a.seen).toHaveLength(1);
      expect(b.seen).toHaveLength(1);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 2, endpoint: `127.0.0.1:${b.port}` });
    });

    it('alternates endpoints when every try fails', async () => {
      const a = await scripted([503], 'a');
      const b = await scripted([503], 'b');
      const t = cleanup.add(await startTandem(simpleConfig([a.port, b.port], RETRY_5XX)));
      const res = await client.request(`${t.url}/g`);
      expect(res.statusCode).toBe(503);
      expect(await res.body.text()).toBe('a try 2 status 503 body 0');
      expect(a.seen).toHaveLength(2);
      expect(b.seen).toHaveLength(1);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 503, attempts: 3, flags: ['URX'], endpoint: `127.0.0.1:${a.port}` });
    });
  });

  describe('other retry conditions', () => {
    it('retries a status listed in retriableStatusCodes, and only that one', async () => {
      const policy = 'retries: { attempts: 2, retryOn: [retriable-status-codes], retriableStatusCodes: [409], backoff: { base: 10ms, max: 50ms } }';
      const conflict = await scripted([409, 200]);
      let t = cleanup.add(await startTandem(simpleConfig([conflict.port], policy)));
      const res = await client.request(`${t.url}/h`);
      expect(res.statusCode).toBe(200);
      await res.body.text();
      expect(conflict.seen).toHaveLength(2);
      await t.close();

      const broken = await scripted([500, 200]);
      t = cleanup.add(await startTandem(simpleConfig([broken.port], policy)));
      const res2 = await client.request(`${t.url}/h`);
      expect(res2.statusCode).toBe(500);
      await res2.body.text();
      expect(broken.seen).toHaveLength(1);
    });

    it('gateway-error retries 502/503/504 but not 500', async () => {
      const policy = 'retries: { attempts: 1, retryOn: [gateway-error], backoff: { base: 10ms, max: 50ms } }';
      const gw = await scripted([502, 200]);
      const app = await scripted([500, 200]);
      const t = cleanup.add(await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - { name: gw, match: { prefix: /gw }, cluster: gw, ${policy} }
      - { name: app, match: { prefix: / }, cluster: app, ${policy} }
clusters:
  - { name: gw, endpoints: [127.0.0.1:${gw.port}] }
  - { name: app, endpoints: [127.0.0.1:${app.port}] }
`));
      const r1 = await client.request(`${t.url}/gw`);
      expect(r1.statusCode).toBe(200);
      await r1.body.text();
      const r2 = await client.request(`${t.url}/other`);
      expect(r2.statusCode).toBe(500);
      await r2.body.text();
      expect(gw.seen).toHaveLength(2);
      expect(app.seen).toHaveLength(1);
    });

    it('retries after a per-try timeout and answers from the second try', async () => {
      const hung: http.IncomingMessage[] = [];
      let n = 0;
      const up = await startUpstream((req, res) => {
        n++;
        if (n === 1) hung.push(req);
        else res.end('second');
      });
      cleanup.add(up);
      const t = cleanup.add(await startTandem(
        simpleConfig([up.port], 'timeout: 2s\nretries: { attempts: 2, perTryTimeout: 100ms, retryOn: [5xx], backoff: { base: 10ms, max: 50ms } }'),
      ));
      const started = Date.now();
      const res = await client.request(`${t.url}/i`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('second');
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(90);
      expect(elapsed).toBeLessThan(1500);
      expect(up.seen).toHaveLength(2);
      // the hung try was cancelled, its connection closed
      expect(await eventually(() => hung[0]!.socket.destroyed, 2000)).toBe(true);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 2, flags: [] });
      expect(await retries(t.adminUrl)).toBe(1);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '504' })).toBe(1);
    });

    it('answers 504 upstream_timeout when every try times out', async () => {
      const up = await startUpstream(() => undefined);
      cleanup.add(up);
      const t = cleanup.add(await startTandem(
        simpleConfig([up.port], 'timeout: 2s\nretries: { attempts: 1, perTryTimeout: 100ms, retryOn: [gateway-error], backoff: { base: 10ms, max: 20ms } }'),
      ));
      const started = Date.now();
      const res = await client.request(`${t.url}/j`);
      await expectTandemError(res, 504, 'upstream_timeout');
      expect(Date.now() - started).toBeLessThan(1500);
      expect(up.seen).toHaveLength(2);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 504, attempts: 2 });
      expect(line!.flags).toEqual(expect.arrayContaining(['UT', 'URX']));
    });

    it('does not retry a POST after a per-try timeout (the app may have seen it)', async () => {
      const up = await startUpstream(() => undefined);
      cleanup.add(up);
      const t = cleanup.add(await startTandem(
        simpleConfig([up.port], 'timeout: 2s\nretries: { attempts: 2, perTryTimeout: 100ms, retryOn: [5xx], backoff: { base: 10ms, max: 20ms } }'),
      ));
      const res = await client.request(`${t.url}/k`, { method: 'POST', body: 'once' });
      await expectTandemError(res, 504, 'upstream_timeout');
      expect(up.seen).toHaveLength(1);
    });

    it('stops retrying when the route timeout expires: 504 within the route timeout', async () => {
      // 11 tries of at least 40 ms each cannot fit in 200 ms
      const up = await scripted([503], 'app', 40);
      const t = cleanup.add(await startTandem(
        simpleConfig([up.port], 'timeout: 200ms\nretries: { attempts: 10, retryOn: [5xx], backoff: { base: 10ms, max: 20ms } }'),
      ));
      const started = Date.now();
      const res = await client.request(`${t.url}/l`);
      const elapsed = Date.now() - started;
      await expectTandemError(res, 504, 'upstream_timeout');
      expect(elapsed).toBeGreaterThanOrEqual(190);
      expect(elapsed).toBeLessThan(1000);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 504 });
      // the try cut by the timer may or may not have reached the upstream
      const tries = up.seen.length;
      expect(tries).toBeGreaterThan(1);
      expect(line!.attempts).toBeGreaterThanOrEqual(tries);
      expect(line!.attempts).toBeLessThanOrEqual(tries + 1);
      expect(line!.attempts).toBeLessThan(11);
      expect(line!.flags).toContain('UT');
    });

    it('sends no further try once the client has left during the backoff', async () => {
      const up = await scripted([503]);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'retries: { attempts: 5, retryOn: [5xx], backoff: { base: 300ms, max: 300ms } }')));
      const ex = client.open(`${t.url}/m`, { method: 'GET' });
      expect(await eventually(() => up.seen.length >= 1, 2000)).toBe(true);
      ex.leave();
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 499 });
      expect(line!.flags).toContain('DC');
      // Each backoff is at most 300 ms: without the cancel, a try would arrive in any 400 ms window.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const seenAfterLeaving = up.seen.length;
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(up.seen.length).toBe(seenAfterLeaving);
    });
  });
});
