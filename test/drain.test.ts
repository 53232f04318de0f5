// Graceful drain (CONTRACT §6), in process and through SIGTERM on the built
// CLI: not ready at once, keep accepting for `drain.delay`, then stop
// accepting, close idle keep-alive connections, answer in-flight requests
// with `connection: close` (HTTP/2 clients get GOAWAY), cut what outlives
// `drain.timeout`, exit 0.

import net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  eventually,
  header,
  parseResponses,
  rawClient,
  spawnTandem,
  startRawUpstream,
  startTandem,
  startUpstream,
  statusOf,
  useCleanup,
  writeTempFile,
  type RawClient,
  type Upstream,
} from './support/harness.js';
import { h2cClient } from './support/client.js';
import { ERROR, RawH2Client, getRequest } from './support/h2-frames.js';

const cleanup = useCleanup();

/** `/slow?ms=N` answers after N ms; anything else at once. */
async function slowUpstream(): Promise<Upstream> {
  const up = await startUpstream((req, res) => {
    const ms = Number(new URL(req.url!, 'http://x').searchParams.get('ms') ?? 0);
    setTimeout(() => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`done ${req.url}`);
    }, ms);
  });
  cleanup.add(up);
  return up;
}

function config(upstreamPort: number, drain: string): string {
  return `
drain: ${drain}
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - match: { prefix: / }
        cluster: app
        timeout: 10s
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstreamPort}]
`;
}

async function client(port: number): Promise<RawClient> {
  const c = await rawClient(port);
  cleanup.add({ close: () => c.destroy() });
  return c;
}

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: app\r\n\r\n`;

/** Resolves true when a TCP connection to `port` is refused. */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

async function readyStatus(adminUrl: string): Promise<number> {
  return (await fetch(`${adminUrl}/ready`)).status;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('drain in process', () => {
  it('not ready at once, accepts during the delay, then finishes in-flight work and closes', async () => {
    const up = await slowUpstream();
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 400ms, timeout: 5s }')));
    const port = t.port;
    expect(await readyStatus(t.adminUrl)).toBe(200);

    // an idle keep-alive connection and a slow request in flight
    const idle = await client(port);
    idle.write(get('/warm'));
    await idle.waitFor((s) => s.includes('done /warm'));
    const slow = await client(port);
    slow.write(get('/slow?ms=900'));
    await sleep(30);

    const started = Date.now();
    const drained = t.tandem.drain();
    expect(await readyStatus(t.adminUrl)).toBe(503);

    // within the delay: new connections still get served
    const during = await client(port);
    during.write(get('/during'));
    const duringText = await during.waitFor((s) => s.includes('done /during'));
    expect(statusOf(duringText)).toBe(200);
    expect(idle.closed()).toBe(false);
    expect(Date.now() - started).toBeLessThan(400);

    // after the delay: idle connections closed, new ones refused
    expect(await idle.waitClosed(1000)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    expect(await refuses(port)).toBe(true);

    // the slow request still completes, with connection: close
    const slowText = await slow.waitFor((s) => s.includes('done /slow'), 3000);
    const [res] = parseResponses(slowText);
    expect(res?.status).toBe(200);
    expect(header(res!, 'connection')).toBe('close');
    expect(await slow.waitClosed()).toBe(true);

    await drained;
    // well before drain.timeout: nothing was left to wait for
    expect(Date.now() - started).toBeLessThan(3000);
    await t.tandem.finished;
    // the admin goes with it
    await expect(fetch(`${t.adminUrl}/ready`)).rejects.toThrow();
  });

  it('reads no further request from a kept-alive connection once draining', async () => {
    const up = await slowUpstream();
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 0s, timeout: 2s }')));
    const c = await client(t.port);
    c.write(get('/slow?ms=300'));
    await sleep(50);
    const drained = t.tandem.drain();
    // a second request on the same connection while the first is in flight
    c.write(get('/second'));
    expect(await c.waitClosed(2000)).toBe(true);
    const answers = parseResponses(c.text());
    expect(answers).toHaveLength(1);
    expect(answers[0]!.body).toBe('done /slow?ms=300');
    expect(header(answers[0]!, 'connection')).toBe('close');
    expect(up.seen.map((s) => s.url)).toEqual(['/slow?ms=300']);
    await drained;
  });

  it('a request queued behind an answer that keeps the connection is served after it, with connection: close', async () => {
    const up = await startUpstream((req, res) => {
      if (req.url !== '/stream') return res.end(`done ${req.url}`);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('part1-');
      setTimeout(() => res.end('part2'), 300);
    });
    cleanup.add(up);
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 0s, timeout: 2s }')));
    const c = await client(t.port);
    c.write(get('/stream'));
    await c.waitFor((s) => s.includes('part1-'));
    const drained = t.tandem.drain();
    c.write(get('/next'));
    expect(await c.waitClosed(2000)).toBe(true);
    const answers = parseResponses(c.text());
    expect(answers.map((a) => a.body)).toEqual(['part1-part2', 'done /next']);
    expect(header(answers[1]!, 'connection')).toBe('close');
    await drained;
  });

  it('drain.timeout cuts a request that takes too long', async () => {
    const up = await slowUpstream();
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 0s, timeout: 300ms }')));
    const c = await client(t.port);
    c.write(get('/slow?ms=5000'));
    await sleep(30);
    const started = Date.now();
    await t.tandem.drain();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(280);
    expect(took).toBeLessThan(1500);
    expect(await c.waitClosed(500)).toBe(true);
    // cut, not answered: no complete response went out
    expect(parseResponses(c.text())).toHaveLength(0);
  });

  it('HTTP/2: GOAWAY at once; a stream in flight that ends within drain.timeout is answered, one that outlives it is cut', async () => {
    const up = await slowUpstream();
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 0s, timeout: 600ms }')));
    const c = await RawH2Client.connect(t.port);
    cleanup.add({ close: () => c.close() });
    c.settingsAck();
    c.request(1, getRequest('/slow?ms=300'));
    c.request(3, getRequest('/slow?ms=5000'));
    expect(await eventually(() => up.seen.length === 2)).toBe(true);
    const started = Date.now();
    const drained = t.tandem.drain();
    expect(await c.goaway(500)).toEqual({ errorCode: ERROR.NO_ERROR, lastStreamId: 3 });
    // a stream opened after the GOAWAY is not served
    c.request(5, getRequest('/after'));
    expect(await c.answer(1)).toEqual({ status: 200 });
    expect(await c.untilClosed(2000)).toBe(true);
    await drained;
    expect(Date.now() - started).toBeGreaterThanOrEqual(580);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(await c.answer(3, 0)).toBeUndefined();
    expect(up.seen.map((r) => r.url)).toEqual(['/slow?ms=300', '/slow?ms=5000']);
  });

  it('an open WebSocket tunnel holds the drain until drain.timeout, then is cut', async () => {
    // answers any upgrade with a bare 101, then echoes
    const up = await startRawUpstream((s) => {
      s.once('data', () => {
        s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
        s.on('data', (d: Buffer) => s.write(d));
      });
    });
    cleanup.add(up);
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 0s, timeout: 400ms }')));
    const ws = await client(t.port);
    ws.write('GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    await ws.waitFor((s) => s.includes('\r\n\r\n'));
    expect(statusOf(ws.text())).toBe(101);
    const started = Date.now();
    const drained = t.tandem.drain();
    // the tunnel still carries bytes while the drain waits
    await sleep(100);
    ws.write('ping');
    await ws.waitFor((s) => s.endsWith('ping'));
    expect(await ws.waitClosed(2000)).toBe(true);
    await drained;
    expect(Date.now() - started).toBeGreaterThanOrEqual(380);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('POST /quitquitquit starts the same drain', async () => {
    const up = await slowUpstream();
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 100ms, timeout: 2s }')));
    const slow = await client(t.port);
    slow.write(get('/slow?ms=300'));
    await sleep(30);
    const quit = await fetch(`${t.adminUrl}/quitquitquit`, { method: 'POST' });
    expect(quit.status).toBe(200);
    await quit.text();
    expect(await readyStatus(t.adminUrl)).toBe(503);
    expect(t.tandem.isDraining).toBe(true);
    const text = await slow.waitFor((s) => s.includes('done /slow'), 2000);
    expect(header(parseResponses(text)[0]!, 'connection')).toBe('close');
    await t.tandem.finished;
    expect(await refuses(t.port)).toBe(true);
  });

  it('GET /quitquitquit is refused and does not drain', async () => {
    const up = await slowUpstream();
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 0s, timeout: 1s }')));
    const res = await fetch(`${t.adminUrl}/quitquitquit`);
    expect(res.status).toBe(405);
    expect(t.tandem.isDraining).toBe(false);
    expect(await readyStatus(t.adminUrl)).toBe(200);
  });
});

describe('drain by signal (built CLI)', () => {
  it('SIGTERM: ready goes 503, the in-flight request completes, the process exits 0', async () => {
    const up = await slowUpstream();
    const file = writeTempFile(`
admin: { address: 127.0.0.1, port: 0 }
accessLog: { format: off }
${config(up.port, '{ delay: 200ms, timeout: 6s }')}`);
    const p = spawnTandem(['--config', file]);
    cleanup.add({ close: () => p.kill() });
    const { listeners, admin } = await p.ready();
    const port = listeners.inbound!;
    const adminUrl = `http://127.0.0.1:${admin}`;
    expect(await readyStatus(adminUrl)).toBe(200);

    const slow = await client(port);
    slow.write(get('/slow?ms=500'));
    await sleep(50);
    const started = Date.now();
    p.child.kill('SIGTERM');
    expect(await eventuallyStatus(adminUrl, 503)).toBe(true);

    // still accepting during the delay
    const during = await client(port);
    during.write(get('/during'));
    expect(statusOf(await during.waitFor((s) => s.includes('done /during')))).toBe(200);

    const text = await slow.waitFor((s) => s.includes('done /slow'), 2000);
    expect(header(parseResponses(text)[0]!, 'connection')).toBe('close');
    expect(await p.exited).toBe(0);
    // well before drain.timeout: nothing was left to wait for
    expect(Date.now() - started, p.stderr()).toBeLessThan(4000);
    expect(await refuses(port)).toBe(true);
    expect(p.stderr()).toContain('draining');
  });
});

/** Polls /ready until it answers `status` (the signal arrives asynchronously). */
async function eventuallyStatus(adminUrl: string, status: number, withinMs = 1000): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if ((await readyStatus(adminUrl)) === status) return true;
    await sleep(10);
  }
  return false;
}

// The drain in process for an HTTP/2 client: where HTTP/1.1 closes idle
// connections and answers with `connection: close`, HTTP/2 sends GOAWAY and
// lets the streams in flight finish.
describe('drain in process over h2c', () => {
  const h2 = h2cClient(cleanup);

  it('not ready at once, serves new connections during the delay, then GOAWAY; the stream in flight finishes', async () => {
    const up = await slowUpstream();
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 400ms, timeout: 5s }')));
    const warm = await h2.request(`${t.url}/warm`);
    expect(await warm.body.text()).toBe('done /warm');
    const slow = h2.request(`${t.url}/slow?ms=900`);
    expect(await eventually(() => up.seen.length === 2)).toBe(true);

    const started = Date.now();
    const drained = t.tandem.drain();
    expect(await readyStatus(t.adminUrl)).toBe(503);

    // within the delay: a new connection is served, the open one not told to go
    const other = h2cClient(cleanup);
    const during = await other.request(`http://localhost:${t.port}/during`);
    expect(during.statusCode).toBe(200);
    expect(await during.body.text()).toBe('done /during');
    expect(await h2.connectionClosed(t.url, 0)).toBe(false);
    expect(Date.now() - started).toBeLessThan(400);

    // after the delay: GOAWAY, new connections refused, the slow stream still answered
    expect(await h2.connectionClosed(t.url, 1000)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(390);
    expect(await refuses(t.port)).toBe(true);
    const res = await slow;
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('done /slow?ms=900');

    await drained;
    expect(Date.now() - started).toBeLessThan(3000);
    await t.tandem.finished;
  });

  it('POST /quitquitquit starts the same drain', async () => {
    const up = await slowUpstream();
    const t = cleanup.add(await startTandem(config(up.port, '{ delay: 100ms, timeout: 2s }')));
    const slow = h2.request(`${t.url}/slow?ms=300`);
    expect(await eventually(() => up.seen.length === 1)).toBe(true);
    const quit = await fetch(`${t.adminUrl}/quitquitquit`, { method: 'POST' });
    expect(quit.status).toBe(200);
    await quit.text();
    expect(t.tandem.isDraining).toBe(true);
    const res = await slow;
    expect(await res.body.text()).toBe('done /slow?ms=300');
    expect(await h2.connectionClosed(t.url, 1000)).toBe(true);
    await t.tandem.finished;
    expect(await refuses(t.port)).toBe(true);
  });
});
