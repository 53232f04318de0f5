// The route idleTimeout: a stream may outlive any total timeout, but not a
// stretch without a byte either way (docs/resilience.md#stream-idle-timeout).

import { describe, expect, it } from 'vitest';
import {
  eventually,
  expectTandemError,
  simpleConfig,
  startRawUpstream,
  startTandem,
  startUpstream,
  useCleanup,
  waitForAccessLog,
} from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';

const cleanup = useCleanup();

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** An event-stream upstream that sends `count` events `gapMs` apart, then ends or (with `stall`) goes silent. */
async function eventStream(count: number, gapMs: number, stall = false) {
  const closed: boolean[] = [];
  const up = await startUpstream((req, res) => {
    const i = closed.push(false) - 1;
    res.on('close', () => (closed[i] = true));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let sent = 0;
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      res.write(`data: ${sent}\n\n`);
      if (++sent < count) return;
      clearInterval(timer);
      if (!stall) res.end();
    }, gapMs);
    req.on('close', () => {
      if (res.destroyed) clearInterval(timer);
    });
  });
  cleanup.add(up);
  return { up, closed };
}

describe.each(PROTOCOLS)('over %s', (protocol) => {
  const client = clientFor(protocol, cleanup);

  describe('route idleTimeout', () => {
    it('lets a stream that keeps sending outlive the idle timeout many times over', async () => {
      const { up } = await eventStream(8, 100);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 0\nidleTimeout: 300ms')));
      const res = await client.request(`${t.url}/events`);
      expect(res.statusCode).toBe(200);
      const text = await res.body.text();
      expect(text.match(/data: \d+/g)).toHaveLength(8);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, flags: [] });
    });

    it('aborts a response that goes silent after its head, logs UT and cancels the upstream request', async () => {
      const { up, closed } = await eventStream(2, 50, true);
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 0\nidleTimeout: 300ms')));
      const started = Date.now();
      const res = await client.request(`${t.url}/events`);
      expect(res.statusCode).toBe(200);
      await expect(res.body.text()).rejects.toThrow();
      const elapsed = Date.now() - started;
      // two events 50 ms apart, then 300 ms of silence
      expect(elapsed).toBeGreaterThanOrEqual(380);
      expect(elapsed).toBeLessThan(1500);
      expect(await eventually(() => closed[0] === true, 2000)).toBe(true);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 200, flags: ['UT'] });
      expect(line!.bytesOut).toBe('data: 0\n\ndata: 1\n\n'.length);
    });

    it('answers 504 upstream_timeout when no response head comes within the idle timeout', async () => {
      let requests = 0;
      const raw = cleanup.add(await startRawUpstream((socket) => socket.once('data', () => requests++)));
      const t = cleanup.add(await startTandem(simpleConfig([raw.port], 'timeout: 0\nidleTimeout: 250ms')));
      const started = Date.now();
      const res = await client.request(`${t.url}/silent`);
      await expectTandemError(res, 504, 'upstream_timeout');
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(240);
      expect(elapsed).toBeLessThan(1500);
      expect(requests).toBe(1);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 504, flags: ['UT'], attempts: 1 });
    });

    it('counts request body bytes: a client trickling its body is not idle', async () => {
      const up = cleanup.add(await startUpstream());
      const t = cleanup.add(await startTandem(simpleConfig([up.port], 'idleTimeout: 250ms')));
      const ex = client.open(`${t.url}/upload`, { method: 'POST', bodyLength: 'unknown' });
      for (let i = 0; i < 6; i++) {
        ex.write('ab');
        await sleep(120);
      }
      ex.end();
      expect(await ex.answer()).toEqual({ status: 200, body: 'ok' });
      expect(up.seen[0]!.body).toBe('ab'.repeat(6));
    });

    it('is off by default: a slow head within the route timeout is answered', async () => {
      const up = cleanup.add(await startUpstream((_req, res) => setTimeout(() => res.end('late'), 400)));
      const t = cleanup.add(await startTandem(simpleConfig([up.port])));
      const res = await client.request(`${t.url}/slow`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('late');
      const config = (await (await fetch(`${t.adminUrl}/config`)).json()) as {
        config: { listeners: { routes: { idleTimeout: number }[] }[] };
      };
      expect(config.config.listeners[0]!.routes[0]!.idleTimeout).toBe(0);
    });
  });
});
