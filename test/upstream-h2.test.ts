// HTTP/1.1 clients through tandem to HTTP/2 upstreams (clusters[].protocol
// h2c and h2): node:http2 servers on real sockets, speaking prior-knowledge
// h2c or h2 over TLS by ALPN. Methods, statuses, headers both ways, large
// streamed bodies, multiplexing and the stream limit, retries, timeouts,
// resets, GOAWAY, and the access log and metrics of each.

import { createHash, randomBytes } from 'node:crypto';
import http2, { type ServerHttp2Stream } from 'node:http2';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { makeCert } from './support/certs.js';
import { startH2Upstream, type H2Handler, type H2Upstream, type H2UpstreamOptions } from './support/h2-upstream.js';
import {
  deadPort,
  eventually,
  expectTandemError,
  metricValue,
  rawRequest,
  simpleConfig,
  startTandem,
  statusOf,
  tempDir,
  useCleanup,
  waitForAccessLog,
  type RunningTandem,
} from './support/harness.js';

const cleanup = useCleanup();
const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL } = http2.constants;

let certs = '';
beforeAll(() => {
  certs = tempDir('tandem-h2-');
  makeCert(certs, 'ca', '/CN=Test CA', { isCa: true });
  makeCert(certs, 'server', '/CN=server', { ca: 'ca', san: 'IP:127.0.0.1' });
});

const pem = (name: string): Buffer => readFileSync(join(certs, name));

async function h2c(handler?: H2Handler, opts?: H2UpstreamOptions): Promise<H2Upstream> {
  return cleanup.add(await startH2Upstream(handler, opts));
}

/** tandem with one cluster `app` of `protocol` over `ports`; `route` and `cluster` are extra YAML lines. */
async function tandemTo(ports: number[], protocol: 'h2c' | 'h2', route = '', cluster = ''): Promise<RunningTandem> {
  const tls = protocol === 'h2' ? `\ntls: { caFile: ${join(certs, 'ca.crt')} }` : '';
  return cleanup.add(await startTandem(simpleConfig(ports, route, `protocol: ${protocol}${tls}\n${cluster}`)));
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A body of `size` random bytes that arrives in 64 KiB pieces, with no length known in advance (sent chunked). */
function streamed(data: Buffer): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= data.length) return void this.push(null);
      this.push(data.subarray(at, at + 64 * 1024));
      at += 64 * 1024;
    },
  });
}

const hold = (): { wait: Promise<void>; release: () => void } => {
  let release!: () => void;
  const wait = new Promise<void>((resolve) => (release = resolve));
  return { wait, release };
};

describe('h2c upstream', () => {
  it('carries each method, the status and the headers both ways', async () => {
    const up = await h2c((stream, seen) => {
      const status = Number(seen.headers['x-want-status'] ?? 200);
      stream.respond({ ':status': status, 'content-type': 'text/plain', 'x-up': 'yes', 'set-cookie': ['a=1', 'b=2'] });
      stream.end(`${seen.headers[':method']} ${seen.body.length}`);
    });
    const t = await tandemTo([up.port], 'h2c');
    for (const [method, status] of [['GET', 200], ['POST', 201], ['PUT', 204], ['DELETE', 404], ['PATCH', 409], ['OPTIONS', 200]] as const) {
      const body = method === 'GET' || method === 'OPTIONS' || method === 'DELETE' ? undefined : 'hello';
      const res = await request(`${t.url}/items/7?q=1`, { method, body, headers: { 'x-want-status': String(status), 'x-custom': 'c' } });
      expect(res.statusCode).toBe(status);
      expect(res.headers['x-up']).toBe('yes');
      expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(await res.body.text()).toBe(status === 204 ? '' : `${method} ${body?.length ?? 0}`);
    }
    expect(up.seen.map((s) => s.headers[':method'])).toEqual(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']);
    const post = up.seen[1]!;
    expect(post.headers).toMatchObject({
      ':path': '/items/7?q=1',
      ':scheme': 'http',
      ':authority': `127.0.0.1:${t.port}`,
      'x-custom': 'c',
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'content-length': '5',
    });
    expect(post.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(post.body.toString()).toBe('hello');
    // one connection carried every request
    expect(up.sessions()).toBe(1);
    const lines = await waitForAccessLog(t, 6);
    expect(lines.map((l) => l.status)).toEqual([200, 201, 204, 404, 409, 200]);
    expect(lines[1]).toMatchObject({ method: 'POST', bytesIn: 5, bytesOut: 6, attempts: 1, endpoint: `127.0.0.1:${up.port}`, flags: [] });
    expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '409' })).toBe(1);
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'all', code: '201' })).toBe(1);
  });

  it('sends the client Host as :authority and no connection-specific header', async () => {
    const up = await h2c();
    const t = await tandemTo([up.port], 'h2c');
    const raw = await rawRequest(
      t.port,
      'GET /h HTTP/1.1\r\nHost: app.example:8080\r\nConnection: keep-alive, x-hop\r\nKeep-Alive: timeout=5\r\n' +
        'Proxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nX-Hop: 1\r\nX-Kept: 2\r\n\r\n',
      500,
    );
    expect(statusOf(raw.text)).toBe(200);
    const headers = up.seen[0]!.headers;
    expect(headers[':authority']).toBe('app.example:8080');
    expect(headers.host).toBeUndefined();
    expect(headers.te).toBe('trailers');
    expect(headers['x-kept']).toBe('2');
    for (const name of ['connection', 'keep-alive', 'proxy-connection', 'http2-settings', 'x-hop', 'transfer-encoding', 'upgrade']) {
      expect(headers[name]).toBeUndefined();
    }
  });

  it('leaves out a TE without trailers, which HTTP/2 forbids', async () => {
    const up = await h2c();
    const t = await tandemTo([up.port], 'h2c');
    const res = await request(`${t.url}/te`, { headers: { te: 'gzip, deflate' } });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(up.seen[0]!.headers.te).toBeUndefined();
  });

  it('streams large bodies both ways, chunked in and out', async () => {
    const requestBody = randomBytes(5 * 1024 * 1024 + 123);
    const responseBody = randomBytes(8 * 1024 * 1024 + 7);
    const up = await h2c((stream, seen) => {
      stream.respond({ ':status': 200, 'x-got': `${seen.body.length} ${sha256(seen.body)}` });
      // written in pieces, without a content-length: the client gets it chunked
      Readable.from(
        (function* () {
          for (let at = 0; at < responseBody.length; at += 100_000) yield responseBody.subarray(at, at + 100_000);
        })(),
      ).pipe(stream);
    });
    const t = await tandemTo([up.port], 'h2c');
    const res = await request(`${t.url}/upload`, { method: 'POST', body: streamed(requestBody) });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-got']).toBe(`${requestBody.length} ${sha256(requestBody)}`);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    const got = Buffer.from(await res.body.arrayBuffer());
    expect(got.length).toBe(responseBody.length);
    expect(sha256(got)).toBe(sha256(responseBody));
    expect(up.seen[0]!.headers['content-length']).toBeUndefined();
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 200, bytesIn: requestBody.length, bytesOut: responseBody.length, flags: [] });
  });

  it('multiplexes concurrent requests on one connection', async () => {
    const gate = hold();
    const up = await h2c((stream) => {
      void gate.wait.then(() => {
        stream.respond({ ':status': 200 });
        stream.end(String(stream.id));
      });
    });
    const t = await tandemTo([up.port], 'h2c');
    const answers = Array.from({ length: 20 }, (_, i) => request(`${t.url}/m${i}`));
    expect(await eventually(() => up.streams.open === 20)).toBe(true);
    gate.release();
    for (const res of await Promise.all(answers)) {
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    expect(up.sessions()).toBe(1);
    expect(up.streams.maxPerSession).toBe(20);
  });

  it('keeps to the stream limit the endpoint announces and to pool.connections', async () => {
    const gate = hold();
    const up = await h2c(
      (stream) => {
        void gate.wait.then(() => {
          stream.respond({ ':status': 200 });
          stream.end();
        });
      },
      { settings: { maxConcurrentStreams: 2 } },
    );
    const t = await tandemTo([up.port], 'h2c', '', 'pool: { connections: 2 }');
    // one request first: the limit is known once the first connection's SETTINGS arrived
    const first = request(`${t.url}/first`);
    expect(await eventually(() => up.streams.open === 1)).toBe(true);
    const rest = Array.from({ length: 7 }, (_, i) => request(`${t.url}/s${i}`));
    // two connections of two streams each; the other four requests wait in the pool
    expect(await eventually(() => up.streams.open === 4)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(up.streams.open).toBe(4);
    expect(up.sessions()).toBe(2);
    gate.release();
    for (const res of await Promise.all([first, ...rest])) {
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    expect(up.seen.length).toBe(8);
    expect(up.streams.maxPerSession).toBe(2);
    expect(up.sessions()).toBe(2);
  });
});

describe('h2 upstream over TLS', () => {
  it('negotiates h2 by ALPN and carries requests and bodies', async () => {
    let alpn: string | false | undefined;
    const up = await h2c(
      (stream, seen) => {
        alpn = (stream.session!.socket as import('node:tls').TLSSocket).alpnProtocol;
        stream.respond({ ':status': 200, 'x-scheme': String(seen.headers[':scheme']) });
        stream.end(seen.body);
      },
      { tls: { key: pem('server.key'), cert: pem('server.crt') } },
    );
    const t = await tandemTo([up.port], 'h2');
    const body = randomBytes(300_000);
    const res = await request(`${t.url}/echo`, { method: 'PUT', body });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-scheme']).toBe('https');
    expect(sha256(Buffer.from(await res.body.arrayBuffer()))).toBe(sha256(body));
    expect(alpn).toBe('h2');
    const res2 = await request(`${t.url}/again`);
    expect(res2.statusCode).toBe(200);
    await res2.body.dump();
    expect(up.sessions()).toBe(1);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ method: 'PUT', status: 200, bytesIn: body.length, bytesOut: body.length });
  });

  it('refuses an endpoint whose certificate the cluster CA did not sign: 502 upstream_connect_failure', async () => {
    const other = tempDir('tandem-h2-other-');
    makeCert(other, 'self', '/CN=self', { san: 'IP:127.0.0.1' });
    const up = await h2c(undefined, { tls: { key: readFileSync(join(other, 'self.key')), cert: readFileSync(join(other, 'self.crt')) } });
    const t = await tandemTo([up.port], 'h2');
    await expectTandemError(await request(`${t.url}/x`), 502, 'upstream_connect_failure');
    expect(up.seen.length).toBe(0);
  });
});
