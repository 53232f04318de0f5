// HTTP/1.1 handling end to end (CONTRACT §3): path normalization, malformed
// requests, keep-alive and pipelining, and response framing. Raw sockets on
// the client side, so the bytes are exactly the ones under test.

import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  expectRawTandemError,
  header,
  parseResponses,
  rawClient,
  rawRequest,
  simpleConfig,
  startTandem,
  startUpstream,
  statusOf,
  useCleanup,
  type ParsedResponse,
  type RunningTandem,
  type Upstream,
} from './support/harness.js';

const cleanup = useCleanup();

async function upstream(...args: Parameters<typeof startUpstream>): Promise<Upstream> {
  const up = await startUpstream(...args);
  cleanup.add(up);
  return up;
}

function get(target: string, extra = ''): string {
  return `GET ${target} HTTP/1.1\r\nHost: a\r\n${extra}Connection: close\r\n\r\n`;
}

/** The one response of a raw answer, asserting there is exactly one. */
async function only(port: number, bytes: string, waitMs?: number): Promise<{ res: ParsedResponse; closed: boolean; text: string }> {
  const raw = await rawRequest(port, bytes, waitMs);
  const all = parseResponses(raw.text);
  expect(all, raw.text).toHaveLength(1);
  return { res: all[0]!, closed: raw.closed, text: raw.text };
}

describe('path normalization', () => {
  let admin: Upstream;
  let app: Upstream;
  let t: RunningTandem;
  async function start(): Promise<number> {
    admin = await upstream((req, res) => res.end(`admin ${req.url}`));
    app = await upstream((req, res) => res.end(`app ${req.url}`));
    t = cleanup.add(await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - name: admin
        match: { prefix: /admin }
        cluster: admin
      - name: app
        match: { prefix: / }
        cluster: app
clusters:
  - name: admin
    endpoints: [127.0.0.1:${admin.port}]
  - name: app
    endpoints: [127.0.0.1:${app.port}]
`));
    return t.port;
  }

  it.each([
    ['/public/../admin', '/admin'],
    ['/public/./../admin/x', '/admin/x'],
    ['/../../admin', '/admin'],
    ['/public/%2e%2e/admin', '/admin'],
    ['/public/%2E%2e/admin/', '/admin/'],
    ['/public/.%2e/admin', '/admin'],
    ['//admin', '/admin'],
    ['/./admin', '/admin'],
  ])('%s matches the /admin route and the upstream gets %s', async (target, expected) => {
    const port = await start();
    const { res } = await only(port, get(target));
    expect(res.status).toBe(200);
    expect(res.body).toBe(`admin ${expected}`);
    expect(admin.seen.map((s) => s.url)).toEqual([expected]);
    expect(app.seen).toHaveLength(0);
    const log = await t!.accessLog();
    // the access log keeps the target as received
    expect(log[0]).toMatchObject({ path: target, route: 'admin' });
  });

  it.each([
    ['//a///b', '/a/b'],
    ['/a/b/..', '/a/'],
    ['/admin/../a', '/a'],
    // an escaped slash is not a separator: `%2F..` is an ordinary segment
    ['/a/%2F../b', '/a/%2F../b'],
  ])('%s goes to the app as %s', async (target, expected) => {
    const port = await start();
    const { res } = await only(port, get(target));
    expect(res.body).toBe(`app ${expected}`);
    expect(app.seen.map((s) => s.url)).toEqual([expected]);
    expect(admin.seen).toHaveLength(0);
  });

  it('passes the query string untouched', async () => {
    const port = await start();
    const target = '/public/../admin?next=/a/../b&x=%2e%2e&y=//z&empty=&q=a+b%20c';
    const { res } = await only(port, get(target));
    expect(res.status).toBe(200);
    expect(admin.seen[0]!.url).toBe('/admin?next=/a/../b&x=%2e%2e&y=//z&empty=&q=a+b%20c');
  });

  it('rejects a path with a broken escape with 400 and closes', async () => {
    const port = await start();
    const { res, closed } = await only(port, get('/admin/%zz'));
    expectRawTandemError(res, 400, 'bad_request');
    expect(closed).toBe(true);
    expect(admin.seen).toHaveLength(0);
    expect(app.seen).toHaveLength(0);
  });
});

describe('malformed requests', () => {
  it.each([
    ['no Host on HTTP/1.1', 'GET / HTTP/1.1\r\n\r\n'],
    ['an empty Host', 'GET / HTTP/1.1\r\nHost: \r\n\r\n'],
    ['two Host lines', 'GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n'],
    ['a garbage request line', 'HELLO WORLD\r\n\r\n'],
    ['a header line without colon', 'GET / HTTP/1.1\r\nHost: a\r\nbroken header\r\n\r\n'],
    ['a space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n'],
    ['both Content-Length and chunked', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'],
    ['two different Content-Length values', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'],
    ['a bare LF line ending in the head', 'GET / HTTP/1.1\nHost: a\n\n'],
    // the target is not origin-form: routing on it while the Host header names another authority would be a bypass
    ['an absolute-form target (rejected, never routed by its authority nor by Host)', 'GET http://evil/admin HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['an asterisk-form target on GET', 'GET * HTTP/1.1\r\nHost: a\r\n\r\n'],
  ])('%s: 400 JSON, the connection closes, nothing goes upstream', async (_what, bytes) => {
    const up = await upstream();
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const { res, closed } = await only(t.port, bytes);
    expectRawTandemError(res, 400, 'bad_request');
    expect(header(res, 'connection')).toBe('close');
    expect(closed).toBe(true);
    expect(up.seen).toHaveLength(0);
  });

  it('serves HTTP/1.0 without a Host', async () => {
    const up = await upstream((req, res) => res.end(`v${req.httpVersion}`));
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const raw = await rawRequest(t.port, 'GET /old HTTP/1.0\r\n\r\n');
    expect(statusOf(raw.text)).toBe(200);
    expect(raw.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(raw.text.endsWith('v1.1')).toBe(true);
    expect(raw.closed).toBe(true);
    expect(up.seen.map((s) => s.url)).toEqual(['/old']);
  });

  it('a request line without version is read as HTTP/0.9 and served like HTTP/1.0: proxied as HTTP/1.1, then closed', async () => {
    const up = await upstream((req, res) => res.end(`v${req.httpVersion}`));
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const raw = await rawRequest(t.port, 'GET /nine\r\nHost: a\r\n\r\n');
    const [res] = parseResponses(raw.text);
    expect(res!.status).toBe(200);
    expect(res!.body).toBe('v1.1');
    expect(raw.closed).toBe(true);
    expect(up.seen.map((s) => s.url)).toEqual(['/nine']);
  });

  it('a bad chunk size: 400, closed, the upstream never gets a complete request', async () => {
    const up = await upstream((_req, res, body) => res.end(`got ${body}`));
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const c = await rawClient(t.port);
    try {
      c.write('POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
      // let the first chunk reach the upstream before the broken one
      await new Promise((r) => setTimeout(r, 50));
      c.write('zz\r\nbad\r\n0\r\n\r\n');
      expect(await c.waitClosed()).toBe(true);
      const all = parseResponses(c.text());
      expect(all).toHaveLength(1);
      expectRawTandemError(all[0]!, 400, 'bad_request');
    } finally {
      c.destroy();
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(up.seen).toHaveLength(0);
  });

  it('a chunk shorter than announced, then the client half-closes: 400, the upstream never gets a complete request', async () => {
    const up = await upstream((_req, res, body) => res.end(`got ${body}`));
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const c = await rawClient(t.port);
    c.write('POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\nhello');
    await new Promise((r) => setTimeout(r, 50));
    c.socket.end();
    expect(await c.waitClosed()).toBe(true);
    const all = parseResponses(c.text());
    c.destroy();
    expect(all).toHaveLength(1);
    expectRawTandemError(all[0]!, 400, 'bad_request');
    await new Promise((r) => setTimeout(r, 100));
    expect(up.seen).toHaveLength(0);
    const log = await t.accessLog();
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ method: 'POST', status: 400 });
  });

  it.each([
    ['CONNECT', 'CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n'],
    ['TRACE', 'TRACE / HTTP/1.1\r\nHost: a\r\n\r\n'],
    ['TRACE with a body', 'TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi'],
  ])('%s: 405 JSON and nothing upstream', async (_what, bytes) => {
    const up = await upstream();
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const { res, closed } = await only(t.port, bytes);
    expectRawTandemError(res, 405, 'method_not_allowed');
    expect(closed).toBe(true);
    expect(up.seen).toHaveLength(0);
  });
});

describe('keep-alive and pipelining', () => {
  it('proxies several requests on one client connection', async () => {
    const up = await upstream((req, res, body) => res.end(`${req.method} ${req.url} ${body}`));
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const c = await rawClient(t.port);
    try {
      c.write('GET /1 HTTP/1.1\r\nHost: a\r\n\r\n');
      await c.waitFor((s) => parseResponses(s).length === 1);
      c.write('POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc');
      await c.waitFor((s) => parseResponses(s).length === 2);
      c.write('POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n');
      await c.waitFor((s) => parseResponses(s).length === 3);
      expect(c.closed()).toBe(false);
      expect(parseResponses(c.text()).map((r) => r.body)).toEqual(['GET /1 ', 'POST /2 abc', 'POST /3 de']);
      expect(up.seen.map((s) => s.url)).toEqual(['/1', '/2', '/3']);
    } finally {
      c.destroy();
    }
  });

  it('answers pipelined requests in order, even when a later one is faster upstream', async () => {
    const delays: Record<string, number> = { '/slow': 150, '/fast': 0, '/mid': 50 };
    const up = await upstream((req, res) => {
      setTimeout(() => res.end(`body of ${req.url}`), delays[req.url!] ?? 0);
    });
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const raw = await rawRequest(
      t.port,
      'GET /slow HTTP/1.1\r\nHost: a\r\n\r\n' +
        'GET /fast HTTP/1.1\r\nHost: a\r\n\r\n' +
        'POST /mid HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx' +
        'GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
      3000,
    );
    expect(raw.closed).toBe(true);
    const all = parseResponses(raw.text);
    expect(all.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(all.map((r) => r.body)).toEqual(['body of /slow', 'body of /fast', 'body of /mid', 'body of /last']);
    expect(new Set(all.map((r) => header(r, 'x-request-id'))).size).toBe(4);
    expect(up.seen.map((s) => s.url).sort()).toEqual(['/fast', '/last', '/mid', '/slow']);
  });

  it('keeps the connection after a tandem error that does not need closing (404)', async () => {
    const up = await upstream();
    const t = cleanup.add(await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    routes:
      - match: { prefix: /app }
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:${up.port}]
`));
    const c = await rawClient(t.port);
    try {
      c.write('GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n');
      await c.waitFor((s) => parseResponses(s).length === 1);
      c.write('GET /app HTTP/1.1\r\nHost: a\r\n\r\n');
      await c.waitFor((s) => parseResponses(s).length === 2);
      const [miss, hit] = parseResponses(c.text());
      expectRawTandemError(miss!, 404, 'no_route');
      expect(hit!.status).toBe(200);
      expect(c.closed()).toBe(false);
    } finally {
      c.destroy();
    }
  });
});

describe('response framing', () => {
  it('HEAD: the head (content-length included) and no body', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-length': '11', 'content-type': 'text/plain' });
      res.end();
    });
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const c = await rawClient(t.port);
    try {
      c.write('HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n');
      await c.waitFor((s) => s.includes('\r\n\r\n'));
      // then a second request on the same connection: a stray body would show up in front of its answer
      c.write('HEAD /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      await c.waitClosed();
      const all = parseResponses(c.text(), [0, 1]);
      expect(all).toHaveLength(2);
      for (const r of all) {
        expect(r.status).toBe(200);
        expect(header(r, 'content-length')).toBe('11');
        expect(r.body).toBe('');
      }
      expect(c.text().endsWith('\r\n\r\n')).toBe(true);
      expect(up.seen.map((s) => s.method)).toEqual(['HEAD', 'HEAD']);
    } finally {
      c.destroy();
    }
  });

  it.each([204, 304])('%i: no body and no framing headers, the connection stays usable', async (status) => {
    const up = await upstream((req, res) => {
      if (req.url === '/next') return res.end('next');
      res.writeHead(status, { etag: '"v1"' });
      res.end();
    });
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const c = await rawClient(t.port);
    try {
      c.write('GET /x HTTP/1.1\r\nHost: a\r\n\r\n');
      await c.waitFor((s) => s.includes('\r\n\r\n'));
      c.write('GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
      await c.waitClosed();
      const all = parseResponses(c.text());
      expect(all.map((r) => r.status)).toEqual([status, 200]);
      expect(all[0]!.body).toBe('');
      expect(header(all[0]!, 'transfer-encoding')).toBeUndefined();
      expect(header(all[0]!, 'etag')).toBe('"v1"');
      expect(all[1]!.body).toBe('next');
    } finally {
      c.destroy();
    }
  });

  it("keeps the upstream's content-length", async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-length': '5' });
      res.end('12345');
    });
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const { res } = await only(t.port, get('/'));
    expect(header(res, 'content-length')).toBe('5');
    expect(header(res, 'transfer-encoding')).toBeUndefined();
    expect(res.chunked).toBe(false);
    expect(res.body).toBe('12345');
  });

  it('re-chunks a chunked upstream response', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first,');
      setTimeout(() => {
        res.write('second,');
        setTimeout(() => res.end('third'), 20);
      }, 20);
    });
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const c = await rawClient(t.port);
    try {
      c.write('GET /chunks HTTP/1.1\r\nHost: a\r\n\r\n');
      await c.waitFor((s) => parseResponses(s).length === 1);
      const [res] = parseResponses(c.text());
      expect(res!.chunked).toBe(true);
      expect(header(res!, 'content-length')).toBeUndefined();
      expect(res!.body).toBe('first,second,third');
      expect(c.text().endsWith('0\r\n\r\n')).toBe(true);
      expect(c.closed()).toBe(false);
    } finally {
      c.destroy();
    }
  });

  it('streams a 1 MiB response intact, chunked and with content-length', async () => {
    const payload = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 10)) & 0xff;
    const digest = createHash('sha256').update(payload).digest('hex');
    const up = await upstream((req, res) => {
      if (req.url === '/sized') res.writeHead(200, { 'content-length': String(payload.length) });
      // in pieces, so the chunked answer has many chunks
      for (let off = 0; off < payload.length; off += 100_000) res.write(payload.subarray(off, off + 100_000));
      res.end();
    });
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    for (const path of ['/sized', '/chunked']) {
      const raw = await rawRequest(t.port, get(path), 5000);
      const [res] = parseResponses(raw.text);
      expect(res!.status).toBe(200);
      expect(res!.chunked).toBe(path === '/chunked');
      const body = Buffer.from(res!.body, 'latin1');
      expect(body.length).toBe(payload.length);
      expect(createHash('sha256').update(body).digest('hex')).toBe(digest);
    }
    const log = await t.accessLog();
    expect(log.map((l) => l.bytesOut)).toEqual([payload.length, payload.length]);
  });

  it('streams a 1 MiB request body intact to the upstream', async () => {
    const payload = Buffer.alloc(1024 * 1024, 'abcdefghijklmnopqrstuvwxyz');
    const up = await upstream((_req, res, body) => res.end(createHash('sha256').update(body).digest('hex')));
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const raw = await rawRequest(
      t.port,
      Buffer.concat([Buffer.from(`POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n`), payload]),
      5000,
    );
    const [res] = parseResponses(raw.text);
    expect(res!.body).toBe(createHash('sha256').update(payload).digest('hex'));
    const log = await t.accessLog();
    expect(log[0]!.bytesIn).toBe(payload.length);
  });
});
