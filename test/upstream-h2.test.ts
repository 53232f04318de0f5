// HTTP/1.1 clients through tandem to HTTP/2 upstreams (clusters[].protocol
// h2c and h2): node:http2 servers on real sockets, speaking prior-knowledge
// h2c or h2 over TLS by ALPN. Methods, statuses, headers both ways, large
// streamed bodies, multiplexing and the stream limit, retries, timeouts,
// resets, GOAWAY, and the access log and metrics of each.

import { createHash, randomBytes } from 'node:crypto';
import http2, { type ServerHttp2Stream } from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { certDir, type CertDir } from './support/certs.js';
import { h2Once } from './support/http2.js';
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
  useCleanup,
  waitForAccessLog,
  type RunningTandem,
} from './support/harness.js';

const cleanup = useCleanup();
const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

let certs: CertDir;
beforeAll(() => {
  certs = certDir('tandem-h2-');
  certs.make('ca', '/CN=Test CA', { isCa: true });
  certs.make('server', '/CN=server', { ca: 'ca', san: 'IP:127.0.0.1' });
});

const pem = (name: string): Buffer => certs.pem(name);

async function h2c(handler?: H2Handler, opts?: H2UpstreamOptions): Promise<H2Upstream> {
  return cleanup.add(await startH2Upstream(handler, opts));
}

/** tandem with one cluster `app` of `protocol` over `ports`; `route` and `cluster` are extra YAML lines. */
async function tandemTo(ports: number[], protocol: 'h2c' | 'h2', route = '', cluster = ''): Promise<RunningTandem> {
  const tls = protocol === 'h2' ? `\ntls: { caFile: ${certs.file('ca.crt')} }` : '';
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
    let alpn: string | false | null = null;
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

  it('speaks HTTP/1.1 to an endpoint whose ALPN picks http/1.1', async () => {
    const server = https.createServer({ key: pem('server.key'), cert: pem('server.crt') }, (req, res) => {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => res.end(`HTTP/${req.httpVersion} ${bytes}`));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.add({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    const t = await tandemTo([(server.address() as AddressInfo).port], 'h2');
    const res = await request(`${t.url}/h1`, { method: 'POST', body: streamed(randomBytes(200_000)) });
    expect(await res.body.text()).toBe('HTTP/1.1 200000');
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 200, bytesIn: 200_000 });
  });

  it('refuses an endpoint whose certificate the cluster CA did not sign: 502 upstream_connect_failure', async () => {
    const other = certDir('tandem-h2-other-');
    other.make('self', '/CN=self', { san: 'IP:127.0.0.1' });
    const up = await h2c(undefined, { tls: { key: other.pem('self.key'), cert: other.pem('self.crt') } });
    const t = await tandemTo([up.port], 'h2');
    await expectTandemError(await request(`${t.url}/x`), 502, 'upstream_connect_failure');
    expect(up.seen.length).toBe(0);
  });
});

describe('h2c upstream failures and retries', () => {
  it('retries a 503 and answers with the next try', async () => {
    let calls = 0;
    const up = await h2c((stream) => {
      calls++;
      stream.respond({ ':status': calls < 3 ? 503 : 200 });
      stream.end(`try ${calls}`);
    });
    const t = await tandemTo([up.port], 'h2c', 'retries: { retryOn: [5xx], attempts: 2, backoff: { base: 1ms, max: 2ms } }');
    const res = await request(`${t.url}/r`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('try 3');
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 200, attempts: 3, flags: [] });
    expect(await metricValue(t.adminUrl, 'tandem_upstream_requests_total', { cluster: 'app', code: '503' })).toBe(2);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(2);
    expect(up.sessions()).toBe(1);
  });

  it('retries a connect failure on the other endpoint, and answers 502 UF when every endpoint is dead', async () => {
    const dead = await deadPort();
    const up = await h2c();
    const t = await tandemTo([dead, up.port], 'h2c', '', 'loadBalancing: round_robin');
    for (let i = 0; i < 2; i++) {
      const res = await request(`${t.url}/c${i}`);
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    const lines = await waitForAccessLog(t, 2);
    expect(lines.map((l) => l.attempts).sort()).toEqual([1, 2]);
    expect(lines.every((l) => l.endpoint === `127.0.0.1:${up.port}`)).toBe(true);

    const t2 = await tandemTo([dead], 'h2c');
    await expectTandemError(await request(`${t2.url}/x`), 502, 'upstream_connect_failure');
    const [line] = await waitForAccessLog(t2);
    expect(line).toMatchObject({ status: 502, attempts: 2, flags: ['URX', 'UF'] });
  });

  it('cancels a try over its per-try timeout with RST_STREAM and retries on the same connection', async () => {
    const resets: boolean[] = [];
    let calls = 0;
    const up = await h2c((stream) => {
      if (++calls === 1) {
        stream.on('close', () => resets.push(stream.aborted));
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('second');
    });
    const t = await tandemTo([up.port], 'h2c', 'retries: { perTryTimeout: 100ms, retryOn: [gateway-error], attempts: 1 }');
    const started = Date.now();
    const res = await request(`${t.url}/slow`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('second');
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    expect(await eventually(() => resets.length === 1)).toBe(true);
    // reset unanswered (undici resets with NO_ERROR, which node:http2 reports as aborted too)
    expect(resets).toEqual([true]);
    expect(up.sessions()).toBe(1);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 200, attempts: 2 });
  });

  it('answers 504 when the only try times out', async () => {
    const up = await h2c(() => undefined);
    const t = await tandemTo([up.port], 'h2c', 'timeout: 150ms');
    await expectTandemError(await request(`${t.url}/hang`), 504, 'upstream_timeout');
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 504, flags: ['UT'] });
    expect(await eventually(() => up.streams.open === 0)).toBe(true);
  });

  it('answers 502 upstream_reset when the upstream resets the stream before answering', async () => {
    const up = await h2c((stream) => stream.close(NGHTTP2_INTERNAL_ERROR));
    const t = await tandemTo([up.port], 'h2c');
    await expectTandemError(await request(`${t.url}/rst`), 502, 'upstream_reset');
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 502, attempts: 1, flags: ['UR'] });
    // only that stream was reset: the connection carries the next request
    const up2Calls = up.seen.length;
    expect(up2Calls).toBe(1);
    expect(up.sessions()).toBe(1);
  });

  it('cuts the client connection when the upstream resets the stream mid-body', async () => {
    const up = await h2c((stream) => {
      stream.respond({ ':status': 200, 'content-length': '1000' });
      stream.write('0123456789');
      setTimeout(() => stream.close(NGHTTP2_INTERNAL_ERROR), 30);
    });
    const t = await tandemTo([up.port], 'h2c');
    const res = await request(`${t.url}/partial`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-length']).toBe('1000');
    await expect(res.body.text()).rejects.toThrow();
    const raw = await rawRequest(t.port, 'GET /partial HTTP/1.1\r\nHost: a\r\n\r\n', 3000);
    expect(raw.closed).toBe(true);
    expect(statusOf(raw.text)).toBe(200);
    expect(raw.text.slice(raw.text.indexOf('\r\n\r\n') + 4)).toBe('0123456789');
    const lines = await waitForAccessLog(t, 2);
    expect(lines.map((l) => [l.status, l.bytesOut, l.flags])).toEqual([
      [200, 10, ['UR']],
      [200, 10, ['UR']],
    ]);
  });

  it('retries a stream the endpoint refuses (REFUSED_STREAM) as a connect failure', async () => {
    let refused = 0;
    const refusing = await h2c((stream) => {
      refused++;
      stream.close(NGHTTP2_REFUSED_STREAM);
    });
    const good = await h2c();
    const t = await tandemTo([refusing.port, good.port], 'h2c', 'retries: { retryOn: [connect-failure], attempts: 1 }', 'loadBalancing: round_robin');
    for (let i = 0; i < 2; i++) {
      const res = await request(`${t.url}/g${i}`);
      expect(res.statusCode).toBe(200);
      await res.body.dump();
    }
    expect(good.seen.map((s) => s.headers[':path'])).toEqual(['/g0', '/g1']);
    const lines = await waitForAccessLog(t, 2);
    expect(lines.map((l) => l.attempts).sort()).toEqual([1, 2]);
    // undici sends a refused request once more by itself before it gives up
    expect(refused).toBe(2);

    // a POST whose body went out with the refused stream cannot be sent again: 502, never a hang
    const t2 = await tandemTo([refusing.port], 'h2c');
    await expectTandemError(await request(`${t2.url}/p`, { method: 'POST', body: 'payload' }), 502, 'upstream_connect_failure');
    const [line] = await waitForAccessLog(t2);
    expect(line).toMatchObject({ status: 502, attempts: 1, flags: ['UF'] });
  });

  it('counts a chunked request body to an h2 upstream against maxBodyBytes: 413', async () => {
    const up = await h2c();
    const t = cleanup.add(
      await startTandem(
        simpleConfig([up.port], '', 'protocol: h2c').replace('    port: 0\n', '    port: 0\n    limits: { maxBodyBytes: 100KiB }\n'),
      ),
    );
    const res = await request(`${t.url}/big`, { method: 'POST', body: streamed(randomBytes(1024 * 1024)) }).catch((err: Error) => err);
    if (!(res instanceof Error)) expect(res.statusCode).toBe(413);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 413 });
    expect(line!.bytesIn as number).toBeGreaterThan(100 * 1024);
    expect(up.seen.length).toBe(0);
  });

  it('gives a GET the free retry when its reused connection dies under it', async () => {
    let calls = 0;
    const up = await h2c((stream) => {
      if (++calls === 2) return void stream.session!.socket.destroy();
      stream.respond({ ':status': 200 });
      stream.end(`call ${calls}`);
    });
    const t = await tandemTo([up.port], 'h2c', 'retries: { attempts: 0 }');
    const first = await request(`${t.url}/a`);
    expect(await first.body.text()).toBe('call 1');
    const second = await request(`${t.url}/b`);
    expect(second.statusCode).toBe(200);
    expect(await second.body.text()).toBe('call 3');
    expect(up.sessions()).toBe(2);
    const lines = await waitForAccessLog(t, 2);
    expect(lines[1]).toMatchObject({ status: 200, attempts: 2, flags: [] });
  });

  it('gives no free retry when the connection opened for the request dies', async () => {
    const up = await h2c((stream) => void stream.session!.socket.destroy());
    const t = await tandemTo([up.port], 'h2c', 'retries: { attempts: 0 }');
    await expectTandemError(await request(`${t.url}/a`), 502, 'upstream_reset');
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 502, attempts: 1, flags: ['UR'] });
    expect(up.seen.length).toBe(1);
  });

  it('fails the requests in flight to an endpoint that dies, then treats it as dead', async () => {
    const up = await h2c(() => undefined);
    const t = await tandemTo([up.port], 'h2c', 'retries: { attempts: 0 }');
    const pending = [request(`${t.url}/1`), request(`${t.url}/2`)];
    expect(await eventually(() => up.streams.open === 2)).toBe(true);
    await up.close();
    const [first, second] = await Promise.all(pending);
    // the first opened the connection; the second, on a connection already
    // open, gets the free retry, which cannot connect any more
    await expectTandemError(first!, 502, 'upstream_reset');
    await expectTandemError(second!, 502, 'upstream_connect_failure');
    await expectTandemError(await request(`${t.url}/3`), 502, 'upstream_connect_failure');
    const lines = await waitForAccessLog(t, 3);
    expect(lines.map((l) => [l.path, l.attempts, l.flags])).toEqual([
      ['/1', 1, ['UR']],
      ['/2', 2, ['UF']],
      ['/3', 1, ['UF']],
    ]);
  });
});

describe('GOAWAY from an h2c upstream', () => {
  const answer = (stream: ServerHttp2Stream, text = 'ok'): void => {
    stream.respond({ ':status': 200 });
    stream.end(text);
  };

  it('opens a new connection for the request after a GOAWAY between requests', async () => {
    const up = await h2c((stream, seen) => {
      const session = stream.session!;
      answer(stream, `session ${seen.session}`);
      stream.on('close', () => session.goaway(NGHTTP2_NO_ERROR));
    });
    const t = await tandemTo([up.port], 'h2c');
    const first = await request(`${t.url}/1`);
    expect(await first.body.text()).toBe('session 1');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const second = await request(`${t.url}/2`);
    expect(await second.body.text()).toBe('session 2');
    const lines = await waitForAccessLog(t, 2);
    expect(lines.map((l) => [l.status, l.attempts])).toEqual([
      [200, 1],
      [200, 1],
    ]);
  });

  it('loses no request to GOAWAYs racing the next requests', async () => {
    const up = await h2c((stream, seen) => {
      answer(stream, `session ${seen.session}`);
      // every connection goes away after its first answer
      stream.session!.goaway(NGHTTP2_NO_ERROR);
    });
    const t = await tandemTo([up.port], 'h2c', 'retries: { attempts: 0 }');
    for (let round = 0; round < 10; round++) {
      const answers = await Promise.all([1, 2, 3].map((i) => request(`${t.url}/r${round}-${i}`)));
      for (const res of answers) {
        expect(res.statusCode).toBe(200);
        await res.body.dump();
      }
    }
    const lines = await waitForAccessLog(t, 30);
    expect(lines.filter((l) => l.status === 200).length).toBe(30);
    expect(up.sessions()).toBeGreaterThan(1);
  });

  it('lets the streams a GOAWAY covers finish on their connection', async () => {
    const held: ServerHttp2Stream[] = [];
    const up = await h2c((stream, seen) => {
      if (seen.session > 1) return answer(stream, 'later');
      held.push(stream);
      if (held.length < 3) return;
      stream.session!.goaway(NGHTTP2_NO_ERROR);
      for (const s of held) setTimeout(() => answer(s, `stream ${s.id}`), 50);
    });
    const t = await tandemTo([up.port], 'h2c');
    const answers = await Promise.all([1, 2, 3].map((i) => request(`${t.url}/f${i}`)));
    const bodies = await Promise.all(answers.map((res) => res.body.text()));
    expect(answers.map((res) => res.statusCode)).toEqual([200, 200, 200]);
    expect(bodies.sort()).toEqual(['stream 1', 'stream 3', 'stream 5']);
    const next = await request(`${t.url}/next`);
    expect(await next.body.text()).toBe('later');
    expect(up.sessions()).toBe(2);
  });

  it('sends again a GET above the last-stream-id, which the upstream never processed', async () => {
    const held: ServerHttp2Stream[] = [];
    const up = await h2c((stream, seen) => {
      if (seen.session > 1) return answer(stream, `session ${seen.session}`);
      held.push(stream);
      if (held.length < 2) return;
      const [low] = held.sort((a, b) => a.id! - b.id!);
      stream.session!.goaway(NGHTTP2_NO_ERROR, low!.id);
      answer(low!, 'session 1');
    });
    const t = await tandemTo([up.port], 'h2c', 'retries: { attempts: 0 }');
    const answers = await Promise.all([request(`${t.url}/a`), request(`${t.url}/b`)]);
    const bodies = await Promise.all(answers.map((res) => res.body.text()));
    expect(answers.map((res) => res.statusCode)).toEqual([200, 200]);
    expect(bodies.sort()).toEqual(['session 1', 'session 2']);
    expect(up.sessions()).toBe(2);
  });

  it('answers 502 upstream_connect_failure for a POST above the last-stream-id whose streamed body cannot be sent again', async () => {
    const held: ServerHttp2Stream[] = [];
    const up = await h2c((stream) => {
      held.push(stream);
      if (held.length < 2) return;
      const [low] = held.sort((a, b) => a.id! - b.id!);
      stream.session!.goaway(NGHTTP2_NO_ERROR, low!.id);
      answer(low!);
    });
    const t = await tandemTo([up.port], 'h2c');
    const get = request(`${t.url}/first`);
    expect(await eventually(() => held.length === 1)).toBe(true);
    const post = request(`${t.url}/post`, { method: 'POST', body: streamed(randomBytes(1000)) });
    const [getRes, postRes] = await Promise.all([get, post]);
    expect(getRes.statusCode).toBe(200);
    await getRes.body.dump();
    await expectTandemError(postRes, 502, 'upstream_connect_failure');
    const lines = await waitForAccessLog(t, 2);
    expect(lines.find((l) => l.path === '/post')).toMatchObject({ status: 502, attempts: 1, flags: ['UF'] });
  });
});

describe('other traffic to an h2c cluster', () => {
  it('probes the endpoints with an HTTP health check over h2c', async () => {
    let healthy = true;
    const up = await h2c((stream, seen) => {
      stream.respond({ ':status': seen.headers[':path'] === '/healthz' && !healthy ? 503 : 200 });
      stream.end();
    });
    const t = await tandemTo([up.port], 'h2c', '', 'healthCheck: { path: /healthz, interval: 30ms, unhealthyThreshold: 1, healthyThreshold: 1 }');
    const gauge = (): Promise<number | undefined> => metricValue(t.adminUrl, 'tandem_endpoint_healthy', { cluster: 'app', endpoint: `127.0.0.1:${up.port}` });
    expect(await eventually(() => up.seen.length >= 2)).toBe(true);
    expect(await gauge()).toBe(1);
    healthy = false;
    expect(await eventually(async () => (await gauge()) === 0)).toBe(true);
    // probes share one connection of their own
    expect(up.sessions()).toBe(1);
  });

  it('answers a WebSocket upgrade that the h2c endpoint cannot take with 502, and serves on', async () => {
    const up = await h2c();
    const t = await tandemTo([up.port], 'h2c');
    const raw = await rawRequest(
      t.port,
      'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      1000,
    );
    expect(statusOf(raw.text)).toBe(502);
    const res = await request(`${t.url}/after`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
  });
});

describe('trailers from an h2 upstream', () => {
  it('reach an HTTP/1.1 client as chunked trailers', async () => {
    const up = await h2c((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-sum': ['a', 'b'] }));
      stream.end('body');
    });
    const t = await tandemTo([up.port], 'h2c');
    const raw = await rawRequest(t.port, 'GET /t HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: close\r\n\r\n');
    expect(statusOf(raw.text)).toBe(200);
    expect(raw.text).toMatch(/\r\ntransfer-encoding: chunked\r\n/i);
    // node:http2 joins a repeated field into one value, and undici passes it on so
    expect(raw.text.endsWith('\r\n4\r\nbody\r\n0\r\ngrpc-status: 0\r\nx-sum: a, b\r\n\r\n')).toBe(true);
    expect(up.seen[0]!.headers.te).toBe('trailers');
  });

  it('reach an HTTP/2 client as trailing HEADERS, HTTP/2 on both sides', async () => {
    const up = await h2c((stream, seen) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(`${seen.headers[':method']} ${seen.headers[':authority']} ${seen.body.toString()}`);
    });
    const t = await tandemTo([up.port], 'h2c');
    const answer = await h2Once(`http://127.0.0.1:${t.port}`, { method: 'POST', path: '/svc/Call', headers: { te: 'trailers' }, body: 'hi' });
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe(`POST 127.0.0.1:${t.port} hi`);
    expect(answer.trailers).toMatchObject({ 'grpc-status': '0' });
    expect(up.seen[0]!.headers[':path']).toBe('/svc/Call');
  });
});
