// Upstreams that refuse, reset or speak garbage: the client gets tandem's
// JSON error (or an aborted response once the head went out), the default
// retry policy does what CONTRACT §3/§4 say, and nothing takes the process down.

import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  deadPort,
  eventually,
  expectTandemError,
  metricValue,
  rawRequest,
  simpleConfig,
  startRawUpstream,
  startTandem,
  startUpstream,
  statusOf,
  useCleanup,
  waitForAccessLog,
} from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';

type RawUpstream = Awaited<ReturnType<typeof startRawUpstream>>;

const cleanup = useCleanup();

/** A raw upstream that counts connections and hands each one's first request bytes to `onRequest`. */
async function rawUpstream(onRequest: (socket: net.Socket) => void): Promise<RawUpstream & { connections: () => number }> {
  let connections = 0;
  const raw = await startRawUpstream((socket) => {
    connections++;
    socket.once('data', () => onRequest(socket));
  });
  cleanup.add(raw);
  return { ...raw, connections: () => connections };
}

describe.each(PROTOCOLS)('over %s', (protocol) => {
  const client = clientFor(protocol, cleanup);

  describe('connect failure', () => {
    it('answers 502 upstream_connect_failure with flag UF when the only endpoint refuses', async () => {
      const dead = await deadPort();
      const t = cleanup.add(await startTandem(simpleConfig([dead])));
      const res = await client.request(`${t.url}/x`);
      await expectTandemError(res, 502, 'upstream_connect_failure');
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 502, endpoint: `127.0.0.1:${dead}`, upstreamMs: expect.any(Number) });
      expect(line!.flags).toContain('UF');
      // The default policy retries once on connect failure, here to the same (only) endpoint.
      expect(line!.attempts).toBe(2);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '502' })).toBe(2);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(1);
    });

    it('retries a GET once on the other endpoint by default and answers 200', async () => {
      const dead = await deadPort();
      const live = await startUpstream();
      cleanup.add(live);
      // Round robin starts with the first endpoint: the dead one.
      const t = cleanup.add(await startTandem(simpleConfig([dead, live.port])));
      const res = await client.request(`${t.url}/r`);
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-tandem-error']).toBeUndefined();
      expect(await res.body.text()).toBe('ok');
      expect(live.seen).toHaveLength(1);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 2, endpoint: `127.0.0.1:${live.port}`, flags: [] });
      expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '502' })).toBe(1);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '200' })).toBe(1);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(1);
    });

    it('retries a POST on connect failure with its body intact', async () => {
      const dead = await deadPort();
      const live = await startUpstream((_req, res, body) => res.end(`got ${body.length}`));
      cleanup.add(live);
      const t = cleanup.add(await startTandem(simpleConfig([dead, live.port])));
      const payload = 'p'.repeat(20_000);
      const res = await client.request(`${t.url}/orders`, { method: 'POST', body: payload, headers: { 'content-type': 'text/plain' } });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('got 20000');
      expect(live.seen).toHaveLength(1);
      expect(live.seen[0]!.method).toBe('POST');
      expect(live.seen[0]!.body).toBe(payload);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 2, endpoint: `127.0.0.1:${live.port}`, flags: [] });
    });
  });

  /**
   * An upstream as one that just restarted looks through a pool of idle
   * connections: it answers the first request on each connection (naming the
   * connection) and kills the connection as soon as another request arrives on
   * it. The first answers wait until `hold` connections carry a request, so
   * that many connections end up idle in tandem's pool.
   */
  async function restartedUpstream(hold = 1, kill: 'destroy' | 'reset' = 'destroy') {
    const state = { connections: 0, killed: 0, closed: 0, requests: [] as string[] };
    let waiting: { socket: net.Socket; n: number }[] | null = [];
    const answer = (socket: net.Socket, n: number) => socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nconn ${n}`);
    const raw = await startRawUpstream((socket) => {
      const n = ++state.connections;
      socket.on('close', () => state.closed++);
      let served = false;
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        if (served) {
          state.killed++;
          if (kill === 'reset') socket.resetAndDestroy();
          else socket.destroy();
          return;
        }
        text += chunk.toString('latin1');
        const head = text.indexOf('\r\n\r\n');
        if (head === -1) return;
        const length = Number(/content-length: *(\d+)/i.exec(text.slice(0, head))?.[1] ?? 0);
        if (text.length < head + 4 + length) return;
        served = true;
        state.requests.push(text);
        if (waiting === null) return void answer(socket, n);
        waiting.push({ socket, n });
        if (waiting.length < hold) return;
        for (const w of waiting) answer(w.socket, w.n);
        waiting = null;
      });
    });
    cleanup.add(raw);
    return { port: raw.port, state };
  }

  describe('reset before the response head', () => {
    it('retries a GET reset on a reused connection once, on a new connection, though every pooled one is stale', async () => {
      const up = await restartedUpstream(2);
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      // two requests at once: two pooled connections, both idle afterwards
      const warm = await Promise.all([client.request(`${t.url}/w1`), client.request(`${t.url}/w2`)]);
      expect((await Promise.all(warm.map((r) => r.body.text()))).sort()).toEqual(['conn 1', 'conn 2']);
      expect(up.state.connections).toBe(2);

      const res = await client.request(`${t.url}/g`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('conn 3');
      expect(up.state.killed).toBe(1);
      expect(up.state.connections).toBe(3);
      // the killed connection and the free retry's own, closed after its answer; the other pooled one stays
      expect(await eventually(() => up.state.closed === 2)).toBe(true);
      const log = await waitForAccessLog(t, 3);
      expect(log[2]).toMatchObject({ path: '/g', status: 200, attempts: 2, flags: [] });
      // The free retry is not a retry (CONTRACT §3).
      expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(0);
    });

    it('does not retry a GET reset on a new connection under the default policy: 502 upstream_reset with UR', async () => {
      const up = await rawUpstream((s) => s.destroy());
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      const res = await client.request(`${t.url}/g`);
      await expectTandemError(res, 502, 'upstream_reset');
      expect(up.connections()).toBe(1);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 502, attempts: 1, endpoint: `127.0.0.1:${up.port}`, flags: ['UR'] });
      expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(0);
    });

    it('adds no free retry to a policy retrying resets when every connection is new', async () => {
      const up = await rawUpstream((s) => s.destroy());
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'retries: { attempts: 2, retryOn: [reset], backoff: { base: 1ms, max: 2ms } }')));
      const res = await client.request(`${t.url}/g`);
      await expectTandemError(res, 502, 'upstream_reset');
      expect(up.connections()).toBe(3);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 502, attempts: 3, flags: ['URX', 'UR'] });
      expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(2);
    });

    it('does not retry a POST that the upstream may have seen', async () => {
      const up = await rawUpstream((s) => s.destroy());
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      const res = await client.request(`${t.url}/p`, { method: 'POST', body: 'hello' });
      await expectTandemError(res, 502, 'upstream_reset');
      expect(up.connections()).toBe(1);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 502, attempts: 1, flags: ['UR'] });
    });

    it('gives no free retry once an interim answer arrived: the reused connection was not stale', async () => {
      let requests = 0;
      const raw = cleanup.add(
        await startRawUpstream((socket) => {
          let served = 0;
          socket.on('data', (chunk: Buffer) => {
            if (!chunk.toString('latin1').includes('\r\n\r\n')) return;
            requests++;
            if (served++ === 0) return void socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
            socket.write('HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n');
            setTimeout(() => socket.destroy(), 20);
          });
        }),
      );
      const t = cleanup.add(await startTandem(simpleConfig([raw.port], 'retries: { attempts: 0 }')));
      expect(await (await client.request(`${t.url}/first`)).body.text()).toBe('ok');
      await expectTandemError(await client.request(`${t.url}/second`), 502, 'upstream_reset');
      expect(requests).toBe(2);
    });

    it('does not give a POST reset on a reused connection the free retry', async () => {
      const up = await restartedUpstream();
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      expect(await (await client.request(`${t.url}/first`)).body.text()).toBe('conn 1');
      const res = await client.request(`${t.url}/p`, { method: 'POST', body: 'hello' });
      await expectTandemError(res, 502, 'upstream_reset');
      expect(up.state.connections).toBe(1);
    });

    it('gives a PUT reset on a reused connection the free retry, sending its body again', async () => {
      const up = await restartedUpstream();
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      expect(await (await client.request(`${t.url}/first`)).body.text()).toBe('conn 1');
      const res = await client.request(`${t.url}/put`, { method: 'PUT', body: 'put-body' });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('conn 2');
      expect(up.state.requests).toHaveLength(2);
      expect(up.state.requests[1]).toMatch(/^PUT \/put HTTP\/1\.1\r\n[^]*\r\n\r\nput-body$/);
      const log = await waitForAccessLog(t, 2);
      expect(log[1]).toMatchObject({ status: 200, attempts: 2, bytesIn: 8, flags: [] });
    });

    it('treats a TCP RST on a reused connection like a close', async () => {
      const up = await restartedUpstream(1, 'reset');
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      expect(await (await client.request(`${t.url}/first`)).body.text()).toBe('conn 1');
      const res = await client.request(`${t.url}/rst`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('conn 2');
      expect(up.state.killed).toBe(1);
    });

    it('answers 502 when the upstream sends bytes that are not HTTP', async () => {
      const up = await rawUpstream((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n\r\n\x00\x01garbage'));
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      const res = await client.request(`${t.url}/garbage`);
      await expectTandemError(res, 502, 'upstream_reset');
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 502 });
      expect(line!.flags).toContain('UR');
    });
  });

  describe('reset in the middle of the body', () => {
    const head = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n';

    it('aborts the client response instead of ending it cleanly (undici client)', async () => {
      const up = await rawUpstream((s) => {
        s.write(head + '0123456789');
        setTimeout(() => s.destroy(), 30);
      });
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      const res = await client.request(`${t.url}/partial`);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-length']).toBe('1000');
      await expect(res.body.text()).rejects.toThrow();
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 1, flags: ['UR'], bytesOut: 10 });
      expect(up.connections()).toBe(1);
    });

    // raw bytes: on HTTP/2 the cut answer is the reset stream of the test above
    it.runIf(protocol === 'http1')('closes the raw client connection with fewer bytes than announced', async () => {
      const up = await rawUpstream((s) => {
        s.write(head + '0123456789');
        setTimeout(() => s.destroy(), 30);
      });
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      const raw = await rawRequest(t.port, 'GET /partial HTTP/1.1\r\nHost: a\r\n\r\n', 3000);
      expect(raw.closed).toBe(true);
      expect(statusOf(raw.text)).toBe(200);
      const body = raw.text.slice(raw.text.indexOf('\r\n\r\n') + 4);
      expect(body).toBe('0123456789');
      const [line] = await waitForAccessLog(t);
      expect(line!.flags).toEqual(['UR']);
    });

    it('aborts a chunked response cut before its last chunk', async () => {
      const up = await rawUpstream((s) => {
        s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n');
        setTimeout(() => s.destroy(), 30);
      });
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      const res = await client.request(`${t.url}/chunked`);
      expect(res.statusCode).toBe(200);
      await expect(res.body.text()).rejects.toThrow();
      const [line] = await waitForAccessLog(t);
      expect(line!.flags).toEqual(['UR']);
    });
  });

  describe('resilience', () => {
    it('survives many failing requests in a row and still serves a good one', async () => {
      const dead = await deadPort();
      const resetter = await rawUpstream((s) => s.destroy());
      const garbage = await rawUpstream((s) => s.end('nope\r\n\r\n'));
      const good = await startUpstream();
      cleanup.add(good);
      const t = cleanup.add(await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - { name: dead, match: { prefix: /dead }, cluster: dead }
      - { name: reset, match: { prefix: /reset }, cluster: reset }
      - { name: garbage, match: { prefix: /garbage }, cluster: garbage }
      - { name: good, match: { prefix: / }, cluster: good }
clusters:
  - { name: dead, endpoints: [127.0.0.1:${dead}] }
  - { name: reset, endpoints: [127.0.0.1:${resetter.port}] }
  - { name: garbage, endpoints: [127.0.0.1:${garbage.port}] }
  - { name: good, endpoints: [127.0.0.1:${good.port}] }
`));
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) {
        for (const path of ['/dead', '/reset', '/garbage']) {
          const res = await client.request(`${t.url}${path}/${i}`, { method: i % 2 === 0 ? 'GET' : 'POST', body: i % 2 === 0 ? undefined : 'b' });
          await res.body.text();
          statuses.push(res.statusCode);
        }
      }
      expect(statuses).toHaveLength(60);
      expect(statuses.every((s) => s === 502)).toBe(true);
      const res = await client.request(`${t.url}/fine`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('ok');
      expect(await eventually(() => good.seen.length === 1)).toBe(true);
      const log = await waitForAccessLog(t, 61);
      expect(log).toHaveLength(61);
      expect(log[60]).toMatchObject({ route: 'good', status: 200, flags: [] });
    });
  });
});
