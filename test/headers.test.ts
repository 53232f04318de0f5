import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { Client } from 'undici';
import type { Dispatcher } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { buildResponseHeaders, buildUpstreamHeaders, compileHeaderOps } from '../src/proxy/headers.js';
import type { UpstreamHeaderOptions } from '../src/proxy/headers.js';
import { requestIdFrom, traceFrom } from '../src/proxy/request-id.js';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const base: UpstreamHeaderOptions = { clientIp: '10.0.0.7', proto: 'http', requestId: 'rid-1', traceparent: TRACEPARENT };

/** flat pairs -> [name, value][] with lowercase names, for readable assertions */
function pairs(flat: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!.toLowerCase(), flat[i + 1]!]);
  return out;
}
function values(flat: string[], name: string): string[] {
  return pairs(flat)
    .filter(([n]) => n === name)
    .map(([, v]) => v);
}
function names(flat: string[]): string[] {
  return pairs(flat).map(([n]) => n);
}

describe('buildUpstreamHeaders', () => {
  it('drops every hop-by-hop header, in any letter case', () => {
    const out = buildUpstreamHeaders(
      [
        'Host', 'example.com',
        'Connection', 'keep-alive',
        'KEEP-ALIVE', 'timeout=5',
        'Proxy-Connection', 'keep-alive',
        'TE', 'gzip',
        'Trailer', 'x-checksum',
        'Transfer-Encoding', 'chunked',
        'Upgrade', 'h2c',
        'Proxy-Authorization', 'Basic abc',
        'proxy-authenticate', 'Basic',
        'Expect', '100-continue',
        'Accept', '*/*',
      ],
      base,
    );
    expect(names(out).sort()).toEqual(['accept', 'host', 'traceparent', 'x-forwarded-for', 'x-forwarded-proto', 'x-request-id']);
  });

  it('drops the headers the Connection header names, keeping the others', () => {
    const out = buildUpstreamHeaders(
      ['Host', 'h', 'X-Secret', 's', 'Connection', 'close, X-Secret,  x-other ', 'x-other', 'o', 'X-Kept', 'k', 'Accept', 'a'],
      base,
    );
    expect(values(out, 'x-secret')).toEqual([]);
    expect(values(out, 'x-other')).toEqual([]);
    expect(values(out, 'x-kept')).toEqual(['k']);
    expect(values(out, 'accept')).toEqual(['a']);
    expect(values(out, 'connection')).toEqual([]);
  });

  it('reads tokens from several Connection lines', () => {
    const out = buildUpstreamHeaders(['Connection', 'x-a', 'x-a', '1', 'connection', 'X-B', 'x-b', '2', 'x-c', '3'], base);
    expect(names(out)).not.toContain('x-a');
    expect(names(out)).not.toContain('x-b');
    expect(values(out, 'x-c')).toEqual(['3']);
  });

  it('cannot use Connection to strip Host or te: trailers', () => {
    const out = buildUpstreamHeaders(['Host', 'example.com', 'TE', 'trailers', 'Connection', 'Host, TE'], base);
    expect(values(out, 'host')).toEqual(['example.com']);
    expect(values(out, 'te')).toEqual(['trailers']);
  });

  it('keeps te: trailers and only that', () => {
    expect(values(buildUpstreamHeaders(['TE', 'trailers'], base), 'te')).toEqual(['trailers']);
    expect(values(buildUpstreamHeaders(['te', 'Trailers'], base), 'te')).toEqual(['trailers']);
    expect(values(buildUpstreamHeaders(['te', 'deflate;q=0.5, trailers'], base), 'te')).toEqual(['trailers']);
    expect(values(buildUpstreamHeaders(['te', 'gzip', 'te', 'trailers'], base), 'te')).toEqual(['trailers']);
    expect(values(buildUpstreamHeaders(['te', 'gzip, deflate'], base), 'te')).toEqual([]);
    expect(values(buildUpstreamHeaders(['te', 'trailersx'], base), 'te')).toEqual([]);
  });

  it('drops x-tandem-* from clients', () => {
    const out = buildUpstreamHeaders(['X-Tandem-Route', 'admin', 'x-tandem-error', 'fake', 'x-tandem-', 'e', 'X-Tandemish', 'kept'], base);
    expect(names(out).filter((n) => n.startsWith('x-tandem'))).toEqual(['x-tandemish']);
  });

  it('sets x-forwarded-for when absent', () => {
    expect(values(buildUpstreamHeaders([], base), 'x-forwarded-for')).toEqual(['10.0.0.7']);
  });

  it('appends the client address to one or several existing x-forwarded-for lines', () => {
    expect(values(buildUpstreamHeaders(['X-Forwarded-For', '1.1.1.1'], base), 'x-forwarded-for')).toEqual(['1.1.1.1, 10.0.0.7']);
    const out = buildUpstreamHeaders(['X-Forwarded-For', '1.1.1.1, 2.2.2.2', 'Accept', '*/*', 'x-forwarded-for', '3.3.3.3'], base);
    expect(values(out, 'x-forwarded-for')).toEqual(['1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7']);
  });

  it('drops a client x-forwarded-for that Connection declares hop-by-hop', () => {
    const out = buildUpstreamHeaders(['X-Forwarded-For', '6.6.6.6', 'Connection', 'X-Forwarded-For'], base);
    expect(values(out, 'x-forwarded-for')).toEqual(['10.0.0.7']);
  });

  it('replaces x-forwarded-proto, x-request-id and traceparent with tandem values', () => {
    const out = buildUpstreamHeaders(
      ['X-Forwarded-Proto', 'https', 'X-Request-Id', 'client-id', 'Traceparent', 'garbage', 'x-request-id', 'second'],
      { ...base, proto: 'https' },
    );
    expect(values(out, 'x-forwarded-proto')).toEqual(['https']);
    expect(values(out, 'x-request-id')).toEqual(['rid-1']);
    expect(values(out, 'traceparent')).toEqual([TRACEPARENT]);
  });

  it('keeps the client Host, once, unless overridden', () => {
    expect(values(buildUpstreamHeaders(['Host', 'Example.com:8080'], base), 'host')).toEqual(['Example.com:8080']);
    expect(values(buildUpstreamHeaders(['Host', 'example.com'], { ...base, hostOverride: 'api.internal' }), 'host')).toEqual(['api.internal']);
    expect(values(buildUpstreamHeaders([], { ...base, hostOverride: 'api.internal' }), 'host')).toEqual(['api.internal']);
    expect(values(buildUpstreamHeaders([], base), 'host')).toEqual([]);
  });

  it('keeps repeated headers as separate pairs, in order, with their original names', () => {
    const out = buildUpstreamHeaders(['Cookie', 'a=1', 'Accept', '*/*', 'Cookie', 'b=2', 'X-Custom', 'v'], base);
    expect(out.slice(0, 8)).toEqual(['Cookie', 'a=1', 'Accept', '*/*', 'Cookie', 'b=2', 'X-Custom', 'v']);
  });

  it('applies route ops: remove, then set (replacing client values)', () => {
    const ops = compileHeaderOps({ set: { 'X-Env': 'prod', 'x-debug-level': '0' }, remove: ['X-Debug', 'cookie'] });
    const out = buildUpstreamHeaders(
      ['x-debug', '1', 'X-DEBUG', '2', 'Cookie', 'a=1', 'x-env', 'dev', 'X-Debug-Level', '9', 'Accept', '*/*'],
      { ...base, ops },
    );
    expect(values(out, 'x-debug')).toEqual([]);
    expect(values(out, 'cookie')).toEqual([]);
    expect(values(out, 'x-env')).toEqual(['prod']);
    expect(values(out, 'x-debug-level')).toEqual(['0']);
    expect(values(out, 'accept')).toEqual(['*/*']);
  });

  it('lets ops replace or remove generated forwarding headers', () => {
    const ops = compileHeaderOps({ set: { 'x-forwarded-proto': 'https', traceparent: TRACEPARENT.replace(/-01$/, '-00') }, remove: ['x-forwarded-for'] });
    const out = buildUpstreamHeaders(['X-Forwarded-For', '1.1.1.1'], { ...base, ops });
    expect(values(out, 'x-forwarded-for')).toEqual([]);
    expect(values(out, 'x-forwarded-proto')).toEqual(['https']);
    expect(values(out, 'traceparent')).toEqual([TRACEPARENT.replace(/-01$/, '-00')]);
  });
});

describe('compileHeaderOps', () => {
  it('is undefined when there is nothing to do', () => {
    expect(compileHeaderOps(undefined)).toBeUndefined();
    expect(compileHeaderOps({})).toBeUndefined();
    expect(compileHeaderOps({ set: {}, remove: [] })).toBeUndefined();
  });

  it('lowercases names and leaves out protected ones', () => {
    const ops = compileHeaderOps({
      set: { Host: 'evil', Connection: 'close', 'Transfer-Encoding': 'chunked', 'Content-Length': '1', 'X-Request-Id': 'x', Expect: 'x', 'X-A': '1' },
      remove: ['TE', 'X-B', 'x-b'],
    });
    expect(ops).toEqual({ drop: ['x-b', 'x-a'], set: ['x-a', '1'], replacesGenerated: 0 });
  });

  it('is undefined when only protected names were given', () => {
    expect(compileHeaderOps({ set: { host: 'x' }, remove: ['connection'] })).toBeUndefined();
  });
});

describe('buildResponseHeaders', () => {
  it('drops hop-by-hop headers and those Connection names, keeps set-cookie lines apart', () => {
    const out = buildResponseHeaders(
      {
        'content-type': 'text/plain',
        connection: 'keep-alive, x-internal',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
        trailer: 'x-checksum',
        upgrade: 'h2c',
        te: 'trailers',
        'proxy-authenticate': 'Basic',
        'proxy-connection': 'close',
        'x-internal': 'secret',
        'set-cookie': ['a=1', 'b=2'],
        server: 'app',
      },
      'rid-9',
    );
    expect(pairs(out)).toEqual([
      ['content-type', 'text/plain'],
      ['set-cookie', 'a=1'],
      ['set-cookie', 'b=2'],
      ['server', 'app'],
      ['x-request-id', 'rid-9'],
    ]);
  });

  it('handles a repeated Connection header given as an array', () => {
    const out = buildResponseHeaders({ connection: ['close', 'x-a'] as unknown as string, 'x-a': '1', 'x-b': '2' }, 'r');
    expect(names(out)).toEqual(['x-b', 'x-request-id']);
  });

  it('replaces the upstream x-request-id with tandem one', () => {
    expect(values(buildResponseHeaders({ 'x-request-id': 'upstream' }, 'rid-1'), 'x-request-id')).toEqual(['rid-1']);
  });

  it('applies response ops', () => {
    const ops = compileHeaderOps({ set: { 'x-served-by': 'tandem', 'cache-control': 'no-store' }, remove: ['server'] });
    const out = buildResponseHeaders({ server: 'app', 'cache-control': 'max-age=60', etag: '"x"' }, 'rid', ops);
    expect(pairs(out)).toEqual([
      ['etag', '"x"'],
      ['x-served-by', 'tandem'],
      ['cache-control', 'no-store'],
      ['x-request-id', 'rid'],
    ]);
  });
});

describe('requestIdFrom', () => {
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it.each([
    'abc',
    'f47ac10b-58cc-4372-a567-0e02b2c3d479',
    '01ARZ3NDEKTSV4RRFFQ69G5FAV',
    'req:1.2_3-4',
    'dGVzdA+/==',
    'x'.repeat(200),
  ])('keeps sane %s', (id) => {
    expect(requestIdFrom(id)).toBe(id);
  });

  it.each([
    ['empty', ''],
    ['too long', 'x'.repeat(201)],
    ['a space', 'a b'],
    ['a comma (joined repeats)', 'a, b'],
    ['a quote', 'a"b'],
    ['a newline', 'a\nb'],
    ['non-ASCII', 'caf\u00e9'],
    ['several values', ['a', 'b']],
    ['absent', undefined],
  ])('replaces one with %s by a new UUID', (_what, value) => {
    const id = requestIdFrom(value);
    expect(id).toMatch(UUID);
  });

  it('makes a different id each time', () => {
    expect(requestIdFrom(undefined)).not.toBe(requestIdFrom(undefined));
  });

  it('makes distinct version 4 UUIDs across pool refills, with random bits in every position', () => {
    const seen = new Set<string>();
    const chars = new Map<number, Set<string>>();
    for (let i = 0; i < 2000; i++) {
      const id = requestIdFrom(undefined);
      expect(id).toMatch(UUID);
      seen.add(id);
      [...id].forEach((c, at) => (chars.get(at) ?? chars.set(at, new Set()).get(at)!).add(c));
    }
    expect(seen.size).toBe(2000);
    // every hex position but the version takes many values; the variant takes 4 (8, 9, a, b)
    for (const [at, values] of chars) {
      if ([8, 13, 18, 23].includes(at)) expect([...values]).toEqual(['-']);
      else if (at === 14) expect([...values]).toEqual(['4']);
      else if (at === 19) expect(values.size).toBe(4);
      else expect(values.size).toBe(16);
    }
  });
});

describe('traceFrom', () => {
  const NEW = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/;

  it.each([
    TRACEPARENT,
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff',
    // higher versions: parsed by the version 00 layout, extra fields after '-'
    '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    'cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds',
  ])('keeps valid %s unchanged', (tp) => {
    expect(traceFrom(tp)).toEqual({ traceparent: tp, traceId: '4bf92f3577b34da6a3ce929d0e0e4736' });
  });

  it.each([
    ['absent', undefined],
    ['empty', ''],
    ['uppercase hex', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01'],
    ['zero trace id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['zero parent id', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['bad version', 'x0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['version 00 with extra data', `${TRACEPARENT}-extra`],
    ['higher version glued data', '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x'],
    ['short trace id', '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01'],
    ['wrong separator', '00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['non-hex flags', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g'],
    ['several headers joined', `${TRACEPARENT}, ${TRACEPARENT}`],
    ['several headers', [TRACEPARENT, TRACEPARENT]],
  ])('starts a new trace when %s', (_what, value) => {
    const { traceparent, traceId } = traceFrom(value);
    const m = NEW.exec(traceparent);
    expect(m).not.toBeNull();
    expect(m![1]).toBe(traceId);
    expect(traceId).not.toBe('0'.repeat(32));
    expect(m![2]).not.toBe('0'.repeat(16));
  });

  it('starts distinct traces, valid by its own rules, across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const { traceparent, traceId } = traceFrom(undefined);
      expect(traceFrom(traceparent)).toEqual({ traceparent, traceId });
      seen.add(traceId);
    }
    expect(seen.size).toBe(1000);
  });
});

describe('over real sockets (undici dispatch and Node writeHead)', () => {
  const servers: http.Server[] = [];
  const clients: Client[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    for (const s of servers.splice(0)) s.closeAllConnections();
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  async function listen(handler: http.RequestListener): Promise<number> {
    const server = http.createServer(handler);
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  }

  /** a one-hop proxy built from the two functions, as the integrator would wire them */
  async function proxyTo(upstreamPort: number): Promise<number> {
    const upstream = new Client(`http://127.0.0.1:${upstreamPort}`);
    clients.push(upstream);
    return listen((req, res) => {
      const headers = buildUpstreamHeaders(req.rawHeaders, { ...base, clientIp: req.socket.remoteAddress! });
      const handler: Dispatcher.DispatchHandler = {
        // undici 8 refuses a handler without it
        onRequestStart() {},
        onResponseStart(_controller, statusCode, responseHeaders) {
          res.writeHead(statusCode, buildResponseHeaders(responseHeaders, 'rid-1'));
        },
        onResponseData(_controller, chunk) {
          res.write(chunk);
        },
        onResponseEnd() {
          res.end();
        },
        onResponseError(_controller, err) {
          res.destroy(err);
        },
      };
      upstream.dispatch({ path: req.url!, method: req.method as Dispatcher.HttpMethod, headers, body: req }, handler);
    });
  }

  function get(port: number, headers: http.OutgoingHttpHeaders): Promise<{ rawHeaders: string[]; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/x?y=1', method: 'POST', headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ rawHeaders: res.rawHeaders, body }));
      });
      req.on('error', reject);
      req.end('hello');
    });
  }

  it('carries the cleaned headers both ways', async () => {
    let seen: string[] = [];
    const upstreamPort = await listen((req, res) => {
      seen = req.rawHeaders;
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        res.writeHead(200, [
          'Set-Cookie', 'a=1',
          'Set-Cookie', 'b=2',
          'Connection', 'x-hop',
          'X-Hop', 'h',
          'X-Request-Id', 'upstream-id',
          'Content-Type', 'text/plain',
        ]);
        res.end(`got ${body}`);
      });
    });
    const proxyPort = await proxyTo(upstreamPort);

    const res = await get(proxyPort, {
      host: 'front.example:8080',
      'x-forwarded-for': '1.1.1.1',
      'x-tandem-route': 'x',
      cookie: 'c=3',
      'proxy-authorization': 'Basic eA==',
      te: 'trailers',
      'x-request-id': 'client-id',
    });

    expect(res.body).toBe('got hello');
    expect(values(seen, 'host')).toEqual(['front.example:8080']);
    expect(values(seen, 'x-forwarded-for')).toEqual(['1.1.1.1, 127.0.0.1']);
    expect(values(seen, 'x-forwarded-proto')).toEqual(['http']);
    expect(values(seen, 'x-request-id')).toEqual(['rid-1']);
    expect(values(seen, 'traceparent')).toEqual([TRACEPARENT]);
    expect(values(seen, 'te')).toEqual(['trailers']);
    expect(values(seen, 'cookie')).toEqual(['c=3']);
    expect(names(seen)).not.toContain('x-tandem-route');
    expect(names(seen)).not.toContain('proxy-authorization');

    expect(values(res.rawHeaders, 'set-cookie')).toEqual(['a=1', 'b=2']);
    expect(values(res.rawHeaders, 'x-hop')).toEqual([]);
    expect(values(res.rawHeaders, 'x-request-id')).toEqual(['rid-1']);
    expect(values(res.rawHeaders, 'content-type')).toEqual(['text/plain']);
    // Node's server writes its own connection header, exactly one
    expect(values(res.rawHeaders, 'connection')).toEqual(['keep-alive']);
  });

  it('keeps repeated cookie lines of the client as separate lines upstream', async () => {
    let seen: string[] = [];
    let received = '';
    const upstreamPort = await listen((req, res) => {
      seen = req.rawHeaders;
      req.setEncoding('utf8');
      req.on('data', (c: string) => (received += c));
      req.on('end', () => res.end('done'));
    });
    const proxyPort = await proxyTo(upstreamPort);
    // a raw socket: Node's own client would join the cookie lines; not
    // half-closed, which would make Node's server abort the request
    const socket = net.connect(proxyPort, '127.0.0.1');
    socket.write(
      'POST /x HTTP/1.1\r\nHost: h\r\nCookie: a=1\r\nCookie: b=2\r\nTransfer-Encoding: chunked\r\n' +
        'Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    );
    let response = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (response += c));
    await once(socket, 'close');
    expect(response).toMatch(/^HTTP\/1.1 200 OK\r\n/);
    expect(response).toMatch(/\r\n\r\n(4\r\n)?done/);
    expect(values(seen, 'cookie')).toEqual(['a=1', 'b=2']);
    // the client's framing is not forwarded: undici frames the body itself
    expect(received).toBe('hello');
    expect(values(seen, 'transfer-encoding').length + values(seen, 'content-length').length).toBe(1);
    // and the client's `connection: close` stays between client and tandem
    expect(values(seen, 'connection')).toEqual(['keep-alive']);
  });
});
