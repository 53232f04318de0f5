// The listener `limits` (CONTRACT §2) end to end: head size and line count,
// body size (declared and streamed), the head, request and idle timeouts.
// Node checks the head and request timeouts once a second here, so those
// answers are expected within about 1.5 s of a 300 ms limit.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  expectRawTandemError,
  expectTandemError,
  parseResponses,
  rawClient,
  rawRequest,
  startTandem,
  startUpstream,
  type RawClient,
  type RunningTandem,
  type Upstream,
  useCleanup,
  waitForAccessLog,
} from './support/harness.js';
import { h2cClient } from './support/client.js';

let t: RunningTandem | undefined;
let ups: Upstream[] = [];
let clients: RawClient[] = [];
let servers: http.Server[] = [];
afterEach(async () => {
  for (const c of clients) c.destroy();
  await t?.close();
  await Promise.all(ups.map((u) => u.close()));
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  t = undefined;
  ups = [];
  clients = [];
  servers = [];
});

function config(upstreamPort: number, limits: string): string {
  return `
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    limits: { ${limits} }
    routes:
      - name: all
        match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstreamPort}]
`;
}

async function proxy(limits: string, handler?: Parameters<typeof startUpstream>[0]): Promise<{ up: Upstream; port: number }> {
  const up = await startUpstream(handler);
  ups.push(up);
  t = await startTandem(config(up.port, limits));
  return { up, port: t.port };
}

async function client(port: number): Promise<RawClient> {
  const c = await rawClient(port);
  clients.push(c);
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An upstream that records whether each request body arrived whole or the request was aborted. */
async function startTrackingUpstream(): Promise<{ port: number; events: string[] }> {
  const events: string[] = [];
  const server = http.createServer((req, res) => {
    events.push(`start ${req.url}`);
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      events.push(`complete ${bytes}`);
      res.end('ok');
    });
    req.on('close', () => {
      if (!req.complete) events.push('aborted');
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, events };
}

describe('head limits', () => {
  it('a head over maxHeaderBytes: 431 and close, nothing upstream', async () => {
    const { up, port } = await proxy('maxHeaderBytes: 1KiB');
    const raw = await rawRequest(port, `GET / HTTP/1.1\r\nHost: a\r\nx-big: ${'b'.repeat(2000)}\r\n\r\n`);
    const [res] = parseResponses(raw.text);
    expectRawTandemError(res, 431, 'headers_too_large', { close: true });
    expect(raw.closed).toBe(true);
    expect(up.seen).toHaveLength(0);
  });

  it('a head just under maxHeaderBytes is served', async () => {
    const { up, port } = await proxy('maxHeaderBytes: 1KiB');
    const raw = await rawRequest(port, `GET / HTTP/1.1\r\nHost: a\r\nx-big: ${'b'.repeat(800)}\r\nConnection: close\r\n\r\n`);
    expect(parseResponses(raw.text)[0]!.status).toBe(200);
    expect(up.seen[0]!.headers['x-big']).toHaveLength(800);
  });

  it('more header lines than maxHeaders: 431 and close, nothing upstream', async () => {
    const { up, port } = await proxy('maxHeaders: 10');
    const lines = Array.from({ length: 11 }, (_, i) => `x-h${i}: ${i}\r\n`).join('');
    // Host plus 11 = 12 lines, past Node's own cap of 11 lines that silently drops the rest
    const raw = await rawRequest(port, `GET / HTTP/1.1\r\nHost: a\r\n${lines}\r\n`);
    const [res] = parseResponses(raw.text);
    expectRawTandemError(res, 431, 'headers_too_large', { close: true });
    expect(raw.closed).toBe(true);
    expect(up.seen).toHaveLength(0);
  });

  it('many more header lines than maxHeaders: still 431', async () => {
    const { up, port } = await proxy('maxHeaders: 10');
    const lines = Array.from({ length: 50 }, (_, i) => `x-h${i}: ${i}\r\n`).join('');
    const raw = await rawRequest(port, `GET / HTTP/1.1\r\nHost: a\r\n${lines}\r\n`);
    expectRawTandemError(parseResponses(raw.text)[0], 431, 'headers_too_large', { close: true });
    expect(up.seen).toHaveLength(0);
  });

  it('exactly maxHeaders lines are served, every one forwarded', async () => {
    const { up, port } = await proxy('maxHeaders: 10');
    const lines = Array.from({ length: 8 }, (_, i) => `x-h${i}: ${i}\r\n`).join('');
    const raw = await rawRequest(port, `GET / HTTP/1.1\r\nHost: a\r\n${lines}Connection: close\r\n\r\n`);
    expect(parseResponses(raw.text)[0]!.status).toBe(200);
    for (let i = 0; i < 8; i++) expect(up.seen[0]!.headers[`x-h${i}`]).toBe(String(i));
  });
});

describe('body limit', () => {
  it('a Content-Length over maxBodyBytes: 413 and close before anything goes upstream', async () => {
    const { up, port } = await proxy('maxBodyBytes: 100');
    const c = await client(port);
    // the head alone is enough for the answer: the body is never read
    c.write('POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n');
    expect(await c.waitClosed()).toBe(true);
    expectRawTandemError(parseResponses(c.text())[0], 413, 'payload_too_large', { close: true });
    await sleep(50);
    expect(up.seen).toHaveLength(0);
    const log = await t!.accessLog();
    expect(log[0]).toMatchObject({ status: 413, attempts: 0, bytesIn: 0 });
  });

  it('a Content-Length of exactly maxBodyBytes is forwarded', async () => {
    const { up, port } = await proxy('maxBodyBytes: 100');
    const raw = await rawRequest(port, `POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\nConnection: close\r\n\r\n${'x'.repeat(100)}`);
    expect(parseResponses(raw.text)[0]!.status).toBe(200);
    expect(up.seen[0]!.body).toHaveLength(100);
  });

  it('a chunked body over maxBodyBytes: 413 and close, the upstream never gets the whole body', async () => {
    const track = await startTrackingUpstream();
    t = await startTandem(config(track.port, 'maxBodyBytes: 1000'));
    const c = await client(t.port);
    c.write('POST /stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n');
    c.write(`258\r\n${'a'.repeat(600)}\r\n`);
    await sleep(50);
    c.write(`258\r\n${'b'.repeat(600)}\r\n`);
    // the client keeps the rest for itself: tandem must answer on its own
    expect(await c.waitClosed()).toBe(true);
    expectRawTandemError(parseResponses(c.text())[0], 413, 'payload_too_large', { close: true });
    await sleep(100);
    expect(track.events[0]).toBe('start /stream');
    expect(track.events).toContain('aborted');
    expect(track.events.some((e) => e.startsWith('complete'))).toBe(false);
    const log = await t.accessLog();
    expect(log[0]).toMatchObject({ status: 413, attempts: 1 });
  });

  it('a chunked body far over maxBodyBytes in one write: 413 or a cut connection, never a complete body upstream', async () => {
    const track = await startTrackingUpstream();
    t = await startTandem(config(track.port, 'maxBodyBytes: 1000'));
    const chunks = Array.from({ length: 200 }, () => `1f4\r\n${'c'.repeat(500)}\r\n`).join('');
    const raw = await rawRequest(t.port, `POST /flood HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}0\r\n\r\n`);
    expect(raw.closed).toBe(true);
    // the 413 may be lost to the reset of a connection closed with unread bytes
    const [res] = parseResponses(raw.text);
    if (res !== undefined) expectRawTandemError(res, 413, 'payload_too_large', { close: true });
    await sleep(100);
    expect(track.events.some((e) => e.startsWith('complete'))).toBe(false);
    const log = await t.accessLog();
    expect(log[0]).toMatchObject({ path: '/flood', status: 413 });
    expect(log[0]!.bytesIn as number).toBeLessThan(2000);
  });

  it('a chunked body outgrowing maxBodyBytes after the upstream answered: the client response is cut, not completed', async () => {
    const events: string[] = [];
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('early ');
      req.on('data', () => undefined);
      req.on('end', () => {
        events.push('complete');
        res.end('late');
      });
      req.on('close', () => {
        if (!req.complete) events.push('aborted');
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t = await startTandem(config((server.address() as AddressInfo).port, 'maxBodyBytes: 1000'));
    const c = await client(t.port);
    c.write('POST /early HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n');
    c.write(`258\r\n${'a'.repeat(600)}\r\n`);
    await c.waitFor((s) => s.includes('early'));
    c.write(`258\r\n${'b'.repeat(600)}\r\n`);
    expect(await c.waitClosed()).toBe(true);
    expect(c.text()).toMatch(/^HTTP\/1\.1 200 /);
    // no terminating chunk: the client can tell the answer is incomplete
    expect(c.text().endsWith('0\r\n\r\n')).toBe(false);
    expect(parseResponses(c.text())).toHaveLength(0);
    await sleep(100);
    expect(events).toEqual(['aborted']);
  });

  it('a chunked body of exactly maxBodyBytes is forwarded', async () => {
    const { up, port } = await proxy('maxBodyBytes: 1000');
    const raw = await rawRequest(
      port,
      `POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1f4\r\n${'a'.repeat(500)}\r\n1f4\r\n${'b'.repeat(500)}\r\n0\r\n\r\n`,
    );
    expect(parseResponses(raw.text)[0]!.status).toBe(200);
    expect(up.seen[0]!.body).toHaveLength(1000);
  });

  it('maxBodyBytes 0 means no limit', async () => {
    const { up, port } = await proxy('maxBodyBytes: 0');
    const body = 'z'.repeat(200_000);
    const raw = await rawRequest(port, `POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`, 3000);
    expect(parseResponses(raw.text)[0]!.status).toBe(200);
    expect(up.seen[0]!.body).toHaveLength(body.length);
  });
});

describe('timeouts', () => {
  it('headersTimeout: half a head gets 408 and close within about 1.5 s, nothing upstream', async () => {
    const { up, port } = await proxy('headersTimeout: 300ms, requestTimeout: 300ms');
    const c = await client(port);
    const started = performance.now();
    c.write('GET /slow HTTP/1.1\r\nHost: a\r\nx-partial: ');
    expect(await c.waitClosed(3000)).toBe(true);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(1900);
    expectRawTandemError(parseResponses(c.text())[0], 408, 'request_timeout', { close: true });
    expect(up.seen).toHaveLength(0);
  });

  it('requestTimeout: a body too slow gets 408 and close, and the upstream request is aborted', async () => {
    const track = await startTrackingUpstream();
    t = await startTandem(config(track.port, 'headersTimeout: 300ms, requestTimeout: 500ms'));
    const c = await client(t.port);
    const started = performance.now();
    c.write('POST /slow-body HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789');
    expect(await c.waitClosed(3000)).toBe(true);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(1900);
    expectRawTandemError(parseResponses(c.text())[0], 408, 'request_timeout', { close: true });
    await sleep(100);
    expect(track.events).toEqual(['start /slow-body', 'aborted']);
    const log = await t.accessLog();
    expect(log[0]).toMatchObject({ path: '/slow-body', status: 408, flags: ['DPE'] });
  });

  /**
   * Sends `start`, then `piece` every 200 ms: with requestTimeout 500ms the
   * client gets 408 request_timeout and a closed connection after about that
   * (plus Node's 1 s check interval), long before the 10 s headersTimeout.
   */
  async function expect408AfterRequestTimeout(c: RawClient, start: string, piece: string): Promise<void> {
    const started = performance.now();
    c.write(start);
    const trickle = setInterval(() => c.write(piece), 200);
    try {
      expect(await c.waitClosed(4000)).toBe(true);
    } finally {
      clearInterval(trickle);
    }
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(2500);
    expectRawTandemError(parseResponses(c.text())[0], 408, 'request_timeout', { close: true });
  }

  // A requestTimeout below headersTimeout is not raised to it: the whole
  // request, and so the head as well, must arrive within requestTimeout.
  it('requestTimeout below headersTimeout holds: a body trickled at 5 bytes/s gets 408 after about requestTimeout, not headersTimeout', async () => {
    const track = await startTrackingUpstream();
    t = await startTandem(config(track.port, 'requestTimeout: 500ms'));
    const c = await client(t.port);
    await expect408AfterRequestTimeout(c, 'POST /trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n', 'x');
    const log = await t.accessLog();
    expect(log[0]).toMatchObject({ path: '/trickle', status: 408 });
  });

  it('requestTimeout below headersTimeout is the head deadline too: a head never completed gets 408 after about requestTimeout', async () => {
    const { up, port } = await proxy('headersTimeout: 10s, requestTimeout: 500ms');
    const c = await client(port);
    await expect408AfterRequestTimeout(c, 'GET /slow-head HTTP/1.1\r\nHost: a\r\n', 'x-a: b\r\n');
    expect(up.seen).toHaveLength(0);
  });

  it('idleTimeout: an idle keep-alive connection is closed', async () => {
    const { up, port } = await proxy('idleTimeout: 300ms');
    const c = await client(port);
    c.write('GET /1 HTTP/1.1\r\nHost: a\r\n\r\n');
    await c.waitFor((s) => parseResponses(s).length === 1);
    const answered = performance.now();
    expect(c.closed()).toBe(false);
    expect(await c.waitClosed(2000)).toBe(true);
    const idle = performance.now() - answered;
    expect(idle).toBeGreaterThanOrEqual(250);
    expect(idle).toBeLessThan(1900);
    expect(parseResponses(c.text()).map((r) => r.status)).toEqual([200]);
    expect(up.seen).toHaveLength(1);
  });

  it('idleTimeout does not cut a connection in use', async () => {
    const { up, port } = await proxy('idleTimeout: 300ms');
    const c = await client(port);
    for (let i = 1; i <= 4; i++) {
      c.write(`GET /${i} HTTP/1.1\r\nHost: a\r\n\r\n`);
      await c.waitFor((s) => parseResponses(s).length === i);
      await sleep(150);
    }
    expect(c.closed()).toBe(false);
    expect(up.seen.map((s) => s.url)).toEqual(['/1', '/2', '/3', '/4']);
  });
});

// The same limits on HTTP/2: where HTTP/1.1 answers and closes the
// connection, an HTTP/2 client gets the answer on its stream and the
// connection serves on (asserted by the next request on the same session).
describe('over h2c: answered on the stream', () => {
  const h2 = h2cClient(useCleanup());
  const fields = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-h${i}`, String(i)]));

  async function servesOn(): Promise<void> {
    const next = await h2.request(`${t!.url}/next`);
    expect(next.statusCode).toBe(200);
    await next.body.text();
  }

  it('a head just under maxHeaderBytes is served', async () => {
    const { up } = await proxy('maxHeaderBytes: 1KiB');
    const res = await h2.request(`${t!.url}/`, { headers: { 'x-big': 'b'.repeat(800) } });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(up.seen[0]!.headers['x-big']).toHaveLength(800);
  });

  it('more header fields than maxHeaders (Host from :authority counted): 431, nothing upstream', async () => {
    const { up } = await proxy('maxHeaders: 10');
    await expectTandemError(await h2.request(`${t!.url}/many`, { headers: fields(10) }), 431, 'headers_too_large');
    await servesOn();
    expect(up.seen.map((s) => s.url)).toEqual(['/next']);
  });

  it('exactly maxHeaders fields are served, every one forwarded', async () => {
    const { up } = await proxy('maxHeaders: 10');
    const res = await h2.request(`${t!.url}/`, { headers: fields(9) });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    for (let i = 0; i < 9; i++) expect(up.seen[0]!.headers[`x-h${i}`]).toBe(String(i));
  });

  it('a content-length over maxBodyBytes: 413 before anything goes upstream', async () => {
    const { up } = await proxy('maxBodyBytes: 100');
    await expectTandemError(await h2.request(`${t!.url}/big`, { method: 'POST', body: 'x'.repeat(101) }), 413, 'payload_too_large');
    await servesOn();
    expect(up.seen.map((s) => s.url)).toEqual(['/next']);
    const log = await waitForAccessLog(t!);
    expect(log[0]).toMatchObject({ path: '/big', status: 413, attempts: 0 });
  });

  it('a content-length of exactly maxBodyBytes is forwarded', async () => {
    const { up } = await proxy('maxBodyBytes: 100');
    const res = await h2.request(`${t!.url}/ok`, { method: 'POST', body: 'x'.repeat(100) });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(up.seen[0]!.body).toHaveLength(100);
  });

  it('a body of unknown length outgrowing maxBodyBytes: 413, the upstream never gets it whole', async () => {
    const track = await startTrackingUpstream();
    t = await startTandem(config(track.port, 'maxBodyBytes: 1000'));
    const ex = h2.open(`${t.url}/stream`, { method: 'POST', bodyLength: 'unknown' });
    ex.write('a'.repeat(600));
    await sleep(50);
    ex.write('b'.repeat(600));
    expect((await ex.answer()).status).toBe(413);
    await sleep(100);
    expect(track.events[0]).toBe('start /stream');
    expect(track.events).toContain('aborted');
    expect(track.events.some((e) => e.startsWith('complete'))).toBe(false);
    const log = await waitForAccessLog(t);
    expect(log[0]).toMatchObject({ status: 413, attempts: 1 });
    await servesOn();
  });

  it('requestTimeout: a body too slow gets 408, and the upstream request is aborted', async () => {
    const track = await startTrackingUpstream();
    t = await startTandem(config(track.port, 'requestTimeout: 500ms'));
    const started = performance.now();
    const ex = h2.open(`${t.url}/slow-body`, { method: 'POST', bodyLength: 100 });
    ex.write('0123456789');
    expect((await ex.answer()).status).toBe(408);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(450);
    expect(elapsed).toBeLessThan(1900);
    await sleep(100);
    expect(track.events).toEqual(['start /slow-body', 'aborted']);
    const log = await waitForAccessLog(t);
    expect(log[0]).toMatchObject({ path: '/slow-body', status: 408, flags: ['DPE'] });
  });

  it('idleTimeout: an idle connection is told to go away (GOAWAY)', async () => {
    await proxy('idleTimeout: 300ms');
    const res = await h2.request(`${t!.url}/1`);
    expect(res.statusCode).toBe(200);
    await res.body.text();
    const answered = performance.now();
    expect(await h2.connectionClosed(t!.url, 2000)).toBe(true);
    const idle = performance.now() - answered;
    expect(idle).toBeGreaterThanOrEqual(250);
    expect(idle).toBeLessThan(1900);
  });

  it('idleTimeout does not end a connection in use', async () => {
    const { up } = await proxy('idleTimeout: 300ms');
    for (let i = 1; i <= 4; i++) {
      const res = await h2.request(`${t!.url}/${i}`);
      expect(res.statusCode).toBe(200);
      await res.body.text();
      await sleep(150);
    }
    expect(await h2.connectionClosed(t!.url, 0)).toBe(false);
    expect(up.seen.map((s) => s.url)).toEqual(['/1', '/2', '/3', '/4']);
  });
});
