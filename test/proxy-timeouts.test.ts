// The route timeout (before and after the response head) and a client that
// leaves: tandem's own timers answer on time and the upstream request is
// cancelled in every case (CONTRACT §3).

import net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  eventually,
  expectTandemError,
  metricValue,
  simpleConfig,
  startRawUpstream,
  startTandem,
  startUpstream,
  useCleanup,
  waitForAccessLog,
} from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';

type RawUpstream = Awaited<ReturnType<typeof startRawUpstream>>;

/** What a raw upstream saw: a connection per entry, with when it got the request and when it closed. */
interface Conn {
  requestAt: number;
  closedAt: number | null;
}

const cleanup = useCleanup();

/** A raw upstream recording each connection; `onRequest` runs at its first request bytes. */
async function rawUpstream(onRequest: (socket: net.Socket) => void = () => undefined): Promise<RawUpstream & { conns: Conn[] }> {
  const conns: Conn[] = [];
  const raw = await startRawUpstream((socket) => {
    const conn: Conn = { requestAt: 0, closedAt: null };
    conns.push(conn);
    socket.on('close', () => (conn.closedAt = Date.now()));
    socket.once('data', () => {
      conn.requestAt = Date.now();
      onRequest(socket);
    });
  });
  cleanup.add(raw);
  return { ...raw, conns };
}

describe.each(PROTOCOLS)('over %s', (protocol) => {
  const client = clientFor(protocol, cleanup);

  describe('route timeout before the response head', () => {
    it('answers 504 upstream_timeout on time and aborts the upstream request', async () => {
      const up = await rawUpstream();
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 300ms')));
      const started = Date.now();
      const res = await client.request(`${t.url}/slow`);
      const answeredAt = Date.now();
      await expectTandemError(res, 504, 'upstream_timeout');
      expect(up.conns).toHaveLength(1);
      // Timed from the request reaching the upstream, which leaves connection
      // set-up out: tandem's own timer, not undici's coarse (~1 s) ones.
      const requestAt = up.conns[0]!.requestAt;
      expect(answeredAt - started).toBeGreaterThanOrEqual(290);
      expect(answeredAt - requestAt).toBeLessThan(1000);
      expect(await eventually(() => up.conns[0]!.closedAt !== null, 2000)).toBe(true);
      expect(up.conns[0]!.closedAt! - requestAt).toBeLessThan(1500);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 504, attempts: 1, flags: ['UT'], endpoint: `127.0.0.1:${up.port}` });
      expect(line!.upstreamMs).toBeGreaterThanOrEqual(250);
      expect(line!.upstreamMs).toBeLessThan(1000);
      expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '504' })).toBe(1);
    });

    // POST streams its body; PUT's is kept for the free retry and sent once complete.
    it.each(['POST', 'PUT'])('times a %s from the end of its body, not from its first byte', async (method) => {
      const up = await startUpstream((_req, res) => setTimeout(() => res.end('late but fine'), 100));
      cleanup.add(up);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 400ms')));
      // The body trickles in over ~400 ms; the answer takes 100 ms after it: 500 ms in all.
      const ex = client.open(`${t.url}/trickle`, { method, bodyLength: 6 });
      ex.write('ab');
      await new Promise((resolve) => setTimeout(resolve, 200));
      ex.write('cd');
      await new Promise((resolve) => setTimeout(resolve, 200));
      ex.write('ef');
      ex.end();
      expect(await ex.answer()).toEqual({ status: 200, body: 'late but fine' });
      expect(up.seen[0]!.body).toBe('abcdef');
    });
  });

  describe('route timeout after the response head', () => {
    it('aborts the client connection and logs UT', async () => {
      const up = await rawUpstream((s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nstart'));
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 300ms')));
      const started = Date.now();
      const res = await client.request(`${t.url}/stall`);
      expect(res.statusCode).toBe(200);
      await expect(res.body.text()).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(1000);
      expect(await eventually(() => up.conns[0]!.closedAt !== null, 2000)).toBe(true);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, attempts: 1, bytesOut: 5 });
      expect(line!.flags).toEqual(['UT']);
    });
  });

  describe('client abort', () => {
    // A FIN there reads as a half-close and gets a 400 (see proxy-protocol); a reset cannot be answered.
    it('logs 499 with DC when the client resets in the middle of its body', async () => {
      const up = await startUpstream();
      cleanup.add(up);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 5s')));
      for (const method of ['POST', 'PUT']) {
        const ex = client.open(`${t.url}/half`, { method, bodyLength: 100 });
        ex.write('0123456789');
        await new Promise((resolve) => setTimeout(resolve, 100));
        ex.leave();
      }
      const log = await waitForAccessLog(t, 2);
      expect(log.map((l) => [l.method, l.status, l.flags])).toEqual([
        ['POST', 499, ['DC']],
        ['PUT', 499, ['DC']],
      ]);
      expect(up.seen).toHaveLength(0);
      // still serving
      const res = await client.request(`${t.url}/after`);
      expect(res.statusCode).toBe(200);
      await res.body.text();
    });

    // HTTP/2 only: HEADERS and RST_STREAM in one packet, the stream reset before tandem sees it
    it.runIf(protocol === 'h2c')('logs 499 with DC for a stream reset with its headers, and serves on', async () => {
      const up = await startUpstream();
      cleanup.add(up);
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      for (let i = 0; i < 5; i++) client.open(`${t.url}/gone/${i}`, { method: 'POST', bodyLength: 10 }).leave();
      const log = await waitForAccessLog(t, 5);
      expect(log.map((l) => [l.status, l.flags])).toEqual(Array(5).fill([499, ['DC']]));
      expect(up.seen).toHaveLength(0);
      const res = await client.request(`${t.url}/after`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('ok');
    });

    it('cancels the upstream request and logs 499 with DC', async () => {
      const up = await rawUpstream();
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 5s')));
      const ex = client.open(`${t.url}/wait`, { method: 'GET' });
      expect(await eventually(() => up.conns.length === 1 && up.conns[0]!.requestAt > 0, 2000)).toBe(true);
      const leftAt = Date.now();
      ex.leave();
      expect(await eventually(() => up.conns[0]!.closedAt !== null, 2000)).toBe(true);
      expect(up.conns[0]!.closedAt! - leftAt).toBeLessThan(1000);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 499, attempts: 1, path: '/wait' });
      expect(line!.flags).toEqual(['DC']);
      expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'all', code: '499' })).toBe(1);
    });

    it('cancels an upstream response that is streaming when the client leaves', async () => {
      let ticker: NodeJS.Timeout | undefined;
      const up = await rawUpstream((s) => {
        s.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n');
        ticker = setInterval(() => s.write('4\r\ntick\r\n'), 10);
        s.on('close', () => clearInterval(ticker));
      });
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 5s')));
      const ex = client.open(`${t.url}/stream`, { method: 'GET' });
      expect(await eventually(() => ex.received() > 200, 2000)).toBe(true);
      ex.leave();
      expect(await eventually(() => up.conns[0]!.closedAt !== null, 2000)).toBe(true);
      clearInterval(ticker);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200 });
      expect(line!.flags).toEqual(['DC']);
    });
  });
});
