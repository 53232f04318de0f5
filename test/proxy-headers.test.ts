// CONTRACT §3 header rules end to end: what the upstream receives and what
// the client gets back, over raw sockets on HTTP/1.1 so nothing rewrites the
// headers on the way, and over h2c where HTTP/2 allows the same fields.

import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  deadPort,
  header,
  headerValues,
  parseResponses,
  rawClient,
  rawRequest,
  simpleConfig,
  startRawUpstream,
  startTandem,
  startUpstream,
  useCleanup,
  type ParsedResponse,
  type RunningTandem,
  type Upstream,
} from './support/harness.js';
import { clientFor, PROTOCOLS, type Client, type Headers } from './support/client.js';

const cleanup = useCleanup();
let t: RunningTandem | undefined;

async function proxyTo(up: Upstream, yaml = simpleConfig([up.port])): Promise<RunningTandem> {
  cleanup.add(up);
  t = cleanup.add(await startTandem(yaml));
  return t;
}

/** header names (lowercase) of the first request the upstream saw */
function namesSeen(up: Upstream): string[] {
  return up.seen[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}

function get(target: string, lines: string[]): string {
  return `GET ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\nConnection: close\r\n\r\n`;
}

/**
 * One request with header `lines` ('Name: value', repeats allowed): raw
 * bytes on HTTP/1.1 (with Connection: close), a stream on HTTP/2; the
 * answer as parseResponses reads it.
 */
async function send(client: Client, path: string, lines: string[], init: { method?: string; body?: string } = {}): Promise<ParsedResponse> {
  const method = init.method ?? 'GET';
  if (client.protocol === 'http1') {
    const length = init.body === undefined ? [] : [`Content-Length: ${init.body.length}`];
    const head = `${method} ${path} HTTP/1.1\r\n${[...lines, ...length].join('\r\n')}\r\nConnection: close\r\n\r\n`;
    const [res] = parseResponses((await rawRequest(t!.port, head + (init.body ?? ''))).text);
    return res!;
  }
  const headers: Record<string, string[]> = {};
  for (const line of lines) {
    const colon = line.indexOf(':', 1);
    (headers[line.slice(0, colon).toLowerCase()] ??= []).push(line.slice(colon + 1).trim());
  }
  const res = await client.request(`${t!.url}${path}`, { method, headers, body: init.body });
  return { status: res.statusCode, headers: flat(res.headers), body: await res.body.text(), chunked: false };
}

function flat(headers: Headers): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) out.push([name, v]);
  }
  return out;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

// HTTP/1.1 only: HTTP/2 forbids connection-specific fields (RFC 9113 §8.2.2) and has no Expect
describe('hop-by-hop request headers (HTTP/1.1)', () => {
  it('drops Connection and what it names, Keep-Alive, Proxy-*, TE, Trailer, Upgrade, x-tandem-*; keeps the rest', async () => {
    const up = await startUpstream();
    const { port } = await proxyTo(up);
    const raw = await rawRequest(
      port,
      'GET /h HTTP/1.1\r\n' +
        'Host: app.local\r\n' +
        'Connection: close, X-Secret, x-other\r\n' +
        'X-Secret: 1\r\n' +
        'x-other: 2\r\n' +
        'Keep-Alive: timeout=5\r\n' +
        'Proxy-Connection: keep-alive\r\n' +
        'TE: gzip\r\n' +
        'Trailer: x-checksum\r\n' +
        'Upgrade: websocket\r\n' +
        'Proxy-Authorization: Basic dXNlcjpwYXNz\r\n' +
        'X-Tandem-Route: admin\r\n' +
        'x-tandem-debug: 1\r\n' +
        'X-Keep: yes\r\n' +
        'Accept: */*\r\n\r\n',
    );
    const [res] = parseResponses(raw.text);
    expect(res!.status).toBe(200);
    expect(res!.body).toBe('ok');
    expect(up.seen).toHaveLength(1);
    const names = namesSeen(up);
    for (const gone of ['x-secret', 'x-other', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'x-tandem-route', 'x-tandem-debug']) {
      expect(names, gone).not.toContain(gone);
    }
    // undici speaks keep-alive to the upstream on its own account; the client's `close` is not passed on
    expect(up.seen[0]!.headers.connection ?? 'keep-alive').toBe('keep-alive');
    expect(raw.closed).toBe(true);
    expect(up.seen[0]!.headers['x-keep']).toBe('yes');
    expect(up.seen[0]!.headers.accept).toBe('*/*');
    expect(up.seen[0]!.headers.host).toBe('app.local');
  });

  it('passes TE: trailers (gRPC) and reduces a TE list to trailers', async () => {
    const up = await startUpstream();
    const { port } = await proxyTo(up);
    await rawRequest(port, get('/a', ['Host: a', 'TE: trailers']));
    await rawRequest(port, get('/b', ['Host: a', 'TE: deflate;q=0.5, Trailers']));
    await rawRequest(port, get('/c', ['Host: a', 'TE: deflate']));
    expect(up.seen.map((s) => s.headers.te)).toEqual(['trailers', 'trailers', undefined]);
  });

  it('answers Expect: 100-continue itself and does not forward Expect', async () => {
    const up = await startUpstream((_req, res, body) => res.end(`got ${body}`));
    const { port } = await proxyTo(up);
    const c = await rawClient(port);
    try {
      c.write('POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n');
      // the interim answer comes before any body byte was sent, so it is tandem's
      await c.waitFor((s) => s.includes('\r\n\r\n'));
      expect(c.text()).toMatch(/^HTTP\/1\.1 100 Continue\r\n/);
      expect(up.seen).toHaveLength(0);
      c.write('hello');
      await c.waitClosed();
      const [res] = parseResponses(c.text());
      expect(res!.status).toBe(200);
      expect(res!.body).toBe('got hello');
      expect(up.seen[0]!.headers.expect).toBeUndefined();
    } finally {
      c.destroy();
    }
  });

  it('answers 417 to any other expectation and sends nothing upstream', async () => {
    const up = await startUpstream();
    const { port } = await proxyTo(up);
    const raw = await rawRequest(port, 'POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 200-ok\r\n\r\nhi');
    const [res] = parseResponses(raw.text);
    expect(res!.status).toBe(417);
    expect(header(res!, 'x-tandem-error')).toBe('expectation_failed');
    expect(JSON.parse(res!.body)).toMatchObject({ error: 'expectation_failed' });
    expect(header(res!, 'x-request-id')).toMatch(UUID);
    expect(up.seen).toHaveLength(0);
  });
});

describe.each(PROTOCOLS)('over %s', (protocol) => {
  const client = clientFor(protocol, cleanup);

  describe('hop-by-hop response headers', () => {
    it('drops Connection and what it names, Keep-Alive, Proxy-Authenticate, Trailer, Upgrade; keeps the rest and every set-cookie', async () => {
      const requests: string[] = [];
      const up = await startRawUpstream((s: net.Socket) => {
        let head = '';
        s.on('data', (c: Buffer) => {
          head += c.toString('latin1');
          if (!head.includes('\r\n\r\n')) return;
          requests.push(head);
          s.end(
            'HTTP/1.1 200 OK\r\n' +
              'Connection: x-secret, X-Other\r\n' +
              'x-secret: 1\r\n' +
              'X-Other: 2\r\n' +
              'Keep-Alive: timeout=5\r\n' +
              'Proxy-Authenticate: Basic realm="x"\r\n' +
              'Proxy-Connection: keep-alive\r\n' +
              'Trailer: x-checksum\r\n' +
              'Upgrade: h2c\r\n' +
              'X-Request-Id: from-the-app\r\n' +
              'Set-Cookie: a=1; Path=/\r\n' +
              'Set-Cookie: b=2; HttpOnly\r\n' +
              'X-App: yes\r\n' +
              'Content-Length: 2\r\n\r\nok',
          );
        });
      });
      cleanup.add(up);
      t = cleanup.add(await startTandem(simpleConfig([up.port])));
      const res = await send(client, '/r', ['Host: a', 'X-Request-Id: client-id-1']);
      expect(res!.status).toBe(200);
      expect(res!.body).toBe('ok');
      const names = res!.headers.map(([n]) => n);
      for (const gone of ['x-secret', 'x-other', 'keep-alive', 'proxy-authenticate', 'proxy-connection', 'trailer', 'upgrade']) {
        expect(names, gone).not.toContain(gone);
      }
      // the only Connection header is Node's own answer to the client's `close`; HTTP/2 has none
      expect(headerValues(res!, 'connection')).toEqual(protocol === 'http1' ? ['close'] : []);
      expect(headerValues(res!, 'set-cookie')).toEqual(['a=1; Path=/', 'b=2; HttpOnly']);
      expect(header(res!, 'x-app')).toBe('yes');
      expect(header(res!, 'content-length')).toBe('2');
      expect(headerValues(res!, 'x-request-id')).toEqual(['client-id-1']);
      expect(requests).toHaveLength(1);
    });
  });

  describe('end-to-end request headers', () => {
    it('keeps several cookie lines as they came (joined on HTTP/2)', async () => {
      const up = await startUpstream();
      await proxyTo(up);
      await send(client, '/c', ['Host: a', 'Cookie: a=1', 'Cookie: b=2']);
      const raw = up.seen[0]!.rawHeaders;
      const cookies = raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'cookie');
      // HTTP/2 may split a cookie into fields: joined into one for an HTTP/1.1 upstream (RFC 9113 §8.2.3)
      expect(cookies).toEqual(protocol === 'http1' ? ['a=1', 'b=2'] : ['a=1; b=2']);
    });

    it('appends the client address to x-forwarded-for and sets x-forwarded-proto', async () => {
      const up = await startUpstream();
      await proxyTo(up);
      await send(client, '/1', ['Host: a', 'X-Forwarded-For: 10.0.0.1', 'X-Forwarded-Proto: https']);
      await send(client, '/2', ['Host: a', 'X-Forwarded-For: 10.0.0.1, 10.0.0.2', 'X-Forwarded-For: 10.0.0.3']);
      await send(client, '/3', ['Host: a']);
      expect(up.seen.map((s) => s.headers['x-forwarded-for'])).toEqual([
        '10.0.0.1, 127.0.0.1',
        '10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1',
        '127.0.0.1',
      ]);
      // a client cannot claim https on a plain listener
      expect(up.seen.map((s) => s.headers['x-forwarded-proto'])).toEqual(['http', 'http', 'http']);
      for (const s of up.seen) {
        const raw = s.rawHeaders;
        expect(raw.filter((n, i) => i % 2 === 0 && n.toLowerCase() === 'x-forwarded-for')).toHaveLength(1);
      }
    });
  });

  describe('x-request-id', () => {
    it('keeps a sane id, to the upstream and back, and in the access log', async () => {
      const up = await startUpstream();
      await proxyTo(up);
      const id = 'a1B2-c3.d4_e5:f6+g7/h8=';
      const [res] = [await send(client, '/', ['Host: a', `X-Request-Id: ${id}`])];
      expect(header(res!, 'x-request-id')).toBe(id);
      expect(up.seen[0]!.headers['x-request-id']).toBe(id);
      const log = await t!.accessLog();
      expect(log[0]!.requestId).toBe(id);
    });

    it.each([
      ['too long (201 characters)', 'a'.repeat(201)],
      ['with a space', 'abc def'],
      ['with a comma', 'a,b'],
      ['with a quote', 'a"b'],
      ['with a semicolon', 'a;b'],
    ])('replaces an insane id (%s) with a new UUID', async (_what, bad) => {
      const up = await startUpstream();
      await proxyTo(up);
      const [res] = [await send(client, '/', ['Host: a', `X-Request-Id: ${bad}`])];
      const id = header(res!, 'x-request-id');
      expect(id).toMatch(UUID);
      expect(up.seen[0]!.headers['x-request-id']).toBe(id);
    });

    it('keeps the longest sane id (200 characters)', async () => {
      const up = await startUpstream();
      await proxyTo(up);
      const id = 'x'.repeat(200);
      const [res] = [await send(client, '/', ['Host: a', `X-Request-Id: ${id}`])];
      expect(header(res!, 'x-request-id')).toBe(id);
    });

    it('replaces two x-request-id lines with one new id', async () => {
      const up = await startUpstream();
      await proxyTo(up);
      const [res] = [await send(client, '/', ['Host: a', 'X-Request-Id: one', 'X-Request-Id: two'])];
      const id = header(res!, 'x-request-id');
      expect(id).toMatch(UUID);
      expect(up.seen[0]!.rawHeaders.filter((n, i) => i % 2 === 0 && n.toLowerCase() === 'x-request-id')).toHaveLength(1);
      expect(up.seen[0]!.headers['x-request-id']).toBe(id);
    });

    it('is echoed on errors and direct responses', async () => {
      const dead = await deadPort();
      t = cleanup.add(await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    limits: { maxBodyBytes: 10 }
    routes:
      - name: health
        match: { path: /health }
        directResponse: { status: 200, body: "fine" }
      - name: dead
        match: { prefix: /dead }
        cluster: dead
clusters:
  - name: dead
    endpoints: [127.0.0.1:${dead}]
`));
      // a malformed Host: two on HTTP/1.1, one other than :authority on HTTP/2
      const twoHosts = protocol === 'http1' ? ['Host: a', 'Host: b'] : [':authority: a', 'Host: b'];
      const cases: [string, string[], { method?: string; body?: string }, number, string | undefined][] = [
        ['/health', ['Host: a', 'X-Request-Id: id-direct'], {}, 200, undefined],
        ['/nowhere', ['Host: a', 'X-Request-Id: id-404'], {}, 404, 'no_route'],
        ['/dead', ['Host: a', 'X-Request-Id: id-502'], {}, 502, 'upstream_connect_failure'],
        ['/dead', ['Host: a', 'X-Request-Id: id-405'], { method: 'TRACE' }, 405, 'method_not_allowed'],
        ['/dead', ['Host: a', 'X-Request-Id: id-413'], { method: 'POST', body: '01234567890' }, 413, 'payload_too_large'],
        ['/dead', [...twoHosts, 'X-Request-Id: id-400'], {}, 400, 'bad_request'],
      ];
      for (const [path, lines, init, status, code] of cases) {
        const res = await send(client, path, lines, init);
        const id = lines.at(-1)!.slice('X-Request-Id: '.length);
        expect(res.status, id).toBe(status);
        expect(header(res, 'x-tandem-error'), id).toBe(code);
        expect(header(res, 'x-request-id'), id).toBe(id);
        if (code !== undefined) expect(JSON.parse(res.body), id).toEqual({ error: code, message: expect.any(String), requestId: id });
      }
    });

    // raw bytes: an HTTP/2 request that does not parse never becomes a stream
    it.runIf(protocol === 'http1')('carries a fresh id on the raw answers to unparseable requests', async () => {
      const up = await startUpstream();
      const { port } = await proxyTo(up);
      const [res] = parseResponses((await rawRequest(port, 'HELLO\r\n\r\n')).text);
      expect(res!.status).toBe(400);
      const id = header(res!, 'x-request-id');
      expect(id).toMatch(UUID);
      expect(JSON.parse(res!.body)).toEqual({ error: 'bad_request', message: expect.any(String), requestId: id });
    });
  });

  describe('traceparent', () => {
    it('keeps a valid traceparent unchanged and logs its trace id', async () => {
      const up = await startUpstream();
      await proxyTo(up);
      const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';
      await send(client, '/', ['Host: a', `traceparent: ${tp}`]);
      expect(up.seen[0]!.headers.traceparent).toBe(tp);
      const log = await t!.accessLog();
      expect(log[0]!.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    });

    it('starts a new valid trace when absent', async () => {
      const up = await startUpstream();
      await proxyTo(up);
      await send(client, '/', ['Host: a']);
      await send(client, '/', ['Host: a']);
      const [a, b] = up.seen.map((s) => s.headers.traceparent as string);
      const ma = TRACEPARENT.exec(a!);
      expect(ma).not.toBeNull();
      expect(ma![1]).not.toMatch(/^0+$/);
      expect(ma![2]).not.toMatch(/^0+$/);
      expect(b).toMatch(TRACEPARENT);
      expect(b!.slice(3, 35)).not.toBe(a!.slice(3, 35));
      const log = await t!.accessLog();
      expect(log.map((l) => l.traceId)).toEqual([a!.slice(3, 35), b!.slice(3, 35)]);
    });

    it.each([
      ['uppercase hex', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01'],
      ['an all-zero trace id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
      ['an all-zero parent id', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
      ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
      ['a short trace id', '00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01'],
      ['extra fields on version 00', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x'],
      ['garbage', 'not-a-trace'],
    ])('replaces an invalid traceparent (%s) with a new valid one', async (_what, bad) => {
      const up = await startUpstream();
      await proxyTo(up);
      await send(client, '/', ['Host: a', `traceparent: ${bad}`]);
      const sent = up.seen[0]!.headers.traceparent as string;
      expect(sent).toMatch(TRACEPARENT);
      expect(sent).not.toBe(bad);
      expect(sent.slice(3, 35)).not.toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    });
  });
});
