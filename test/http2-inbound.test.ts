// HTTP/2 in front (CONTRACT §10): h2c with prior knowledge beside HTTP/1.1 on
// a plaintext port, h2 and http/1.1 by ALPN on a TLS port, `protocols`
// narrowing either; an HTTP/2 stream meets the same stages as an HTTP/1.1
// request (tested for the HTTP/1.x-upstream case here; upstream HTTP/2 has
// its own file).

import http from 'node:http';
import https from 'node:https';
import type { ClientHttp2Session } from 'node:http2';
import net from 'node:net';
import { request } from 'undici';
import { beforeAll, describe, expect, it } from 'vitest';
import { formatConfigError } from '../src/config/errors.js';
import { loadConfigText } from '../src/config/load.js';
import { certDir, type CertDir } from './support/certs.js';
import { h2Connect, h2Once, h2Request } from './support/http2.js';
import { eventually, startTandem, startUpstream, useCleanup, waitForAccessLog, type Upstream } from './support/harness.js';

const cleanup = useCleanup();

function config(upstreamPort: number, listenerExtra = ''): string {
  return `
drain: { delay: 0s, timeout: 2s }
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
${listenerExtra}
    routes:
      - name: api
        match: { prefix: /api }
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstreamPort}]
`;
}

async function start(handler?: Parameters<typeof startUpstream>[0], listenerExtra = ''): Promise<{ origin: string; upstream: Upstream; t: Awaited<ReturnType<typeof startTandem>> }> {
  const upstream = cleanup.add(await startUpstream(handler));
  const t = cleanup.add(await startTandem(config(upstream.port, listenerExtra)));
  return { origin: t.url, upstream, t };
}

function session(origin: string): ClientHttp2Session {
  const s = h2Connect(origin);
  cleanup.add({ close: async () => void s.destroy() });
  return s;
}

describe('h2c beside HTTP/1.1 on one plaintext port', () => {
  it('serves HTTP/2 with prior knowledge and HTTP/1.1 on the same port; the upstream gets Host from :authority', async () => {
    const { origin, upstream, t } = await start();
    const h2 = await h2Once(origin, { path: '/api/a?x=1', headers: { 'x-custom': 'v' } });
    expect(h2.status).toBe(200);
    expect(h2.body.toString()).toBe('ok');
    expect(h2.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const h1 = await request(`${origin}/api/b`);
    expect(h1.statusCode).toBe(200);
    expect(await h1.body.text()).toBe('ok');
    expect(upstream.seen.map((s) => s.url)).toEqual(['/api/a?x=1', '/api/b']);
    const seen = upstream.seen[0]!;
    expect(seen.headers.host).toBe(`127.0.0.1:${t.port}`);
    expect(seen.headers['x-custom']).toBe('v');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.rawHeaders.some((h) => h.startsWith(':'))).toBe(false);
    const lines = await waitForAccessLog(t, 2);
    expect(lines.map((l) => [l.method, l.path, l.status])).toEqual([
      ['GET', '/api/a?x=1', 200],
      ['GET', '/api/b', 200],
    ]);
  });

  it('streams request and response bodies both ways', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 'a');
    const { origin, upstream } = await start((_req, res, body) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.alloc(body.length * 2, 'b'));
    });
    const answer = await h2Once(origin, { method: 'POST', path: '/api/upload', body: big, timeoutMs: 15_000 });
    expect(answer.status).toBe(200);
    expect(answer.body.length).toBe(big.length * 2);
    expect(upstream.seen[0]!.body.length).toBe(big.length);
    expect(upstream.seen[0]!.method).toBe('POST');
  });

  it('joins cookie fields HTTP/2 splits into the one Cookie an HTTP/1.1 upstream expects', async () => {
    const { origin, upstream } = await start();
    const s = session(origin);
    const answer = await h2Request(s, { path: '/api/c', headers: { cookie: ['a=1', 'b=2'] } });
    expect(answer.status).toBe(200);
    expect(upstream.seen[0]!.rawHeaders.filter((h) => h.toLowerCase() === 'cookie')).toHaveLength(1);
    expect(upstream.seen[0]!.headers.cookie).toBe('a=1; b=2');
  });

  it("answers tandem's own errors on the stream, the connection serving on", async () => {
    const { origin } = await start();
    const s = session(origin);
    const missing = await h2Request(s, { path: '/nowhere' });
    expect(missing.status).toBe(404);
    expect(missing.headers['x-tandem-error']).toBe('no_route');
    expect(JSON.parse(missing.body.toString()).error).toBe('no_route');
    const fine = await h2Request(s, { path: '/api/after' });
    expect(fine.status).toBe(200);
  });

  it('refuses a Host that disagrees with :authority with 400', async () => {
    const { origin, upstream } = await start();
    // Node's client would turn a lone host into :authority: both are sent
    const answer = await h2Once(origin, { path: '/api/x', headers: { ':authority': 'here.example', host: 'elsewhere.example' } });
    expect(answer.status).toBe(400);
    expect(answer.headers['x-tandem-error']).toBe('bad_request');
    expect(upstream.seen).toHaveLength(0);
  });

  it("forwards the upstream's trailers: trailing HEADERS on HTTP/2, chunked trailers on HTTP/1.1", async () => {
    const { origin } = await start((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('body');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end();
    });
    const h2 = await h2Once(origin, { path: '/api/t', headers: { te: 'trailers' } });
    expect(h2.body.toString()).toBe('body');
    expect(h2.trailers?.['x-checksum']).toBe('abc123');
    const h1Trailers = await new Promise<NodeJS.Dict<string>>((resolve, reject) => {
      http
        .get(`${origin}/api/t`, { headers: { te: 'trailers' } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.trailers));
        })
        .on('error', reject);
    });
    expect(h1Trailers['x-checksum']).toBe('abc123');
  });

  it("a client's RST_STREAM cancels the upstream request and is logged 499 DC", async () => {
    let upstreamClosed = false;
    const { origin, t } = await start((req, res) => {
      res.writeHead(200);
      res.write('partial');
      req.socket.once('close', () => (upstreamClosed = true));
    });
    const s = session(origin);
    const stream = s.request({ ':path': '/api/slow' });
    stream.on('error', () => {});
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    stream.close();
    expect(await eventually(() => upstreamClosed)).toBe(true);
    const [line] = await waitForAccessLog(t, 1);
    expect(line, JSON.stringify(line)).toMatchObject({ status: 200, path: '/api/slow' });
    expect(line!.flags).toContain('DC');
  });

  it('refuses CONNECT with 405, as on HTTP/1.1', async () => {
    const { origin, upstream } = await start();
    const s = session(origin);
    const answer = await h2Request(s, { method: 'CONNECT', headers: { ':authority': 'example.com:443' }, path: undefined });
    expect(answer.status).toBe(405);
    expect(answer.headers['x-tandem-error']).toBe('method_not_allowed');
    expect(upstream.seen).toHaveLength(0);
  });

  it('answers 408 to a stream whose body does not arrive within requestTimeout', async () => {
    const { origin, upstream, t } = await start(undefined, '    limits: { requestTimeout: 300ms }');
    const s = session(origin);
    const stream = s.request({ ':method': 'POST', ':path': '/api/slow-body' });
    stream.on('error', () => {});
    stream.write('part of it');
    const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
    expect(status).toBe(408);
    const [line] = await waitForAccessLog(t, 1);
    expect(line).toMatchObject({ status: 408, flags: expect.arrayContaining(['DPE']) });
    expect(upstream.seen).toHaveLength(0);
  });

  it('announces listeners[].http2.maxConcurrentStreams in its SETTINGS', async () => {
    const { origin } = await start(undefined, '    http2: { maxConcurrentStreams: 7 }');
    const s = session(origin);
    await new Promise<void>((resolve) => s.once('remoteSettings', () => resolve()));
    expect(s.remoteSettings.maxConcurrentStreams).toBe(7);
  });

  it('protocols: [h2c] closes an HTTP/1.1 connection; protocols: [http1] does not speak HTTP/2', async () => {
    const { origin: h2only } = await start(undefined, '    protocols: [h2c]');
    expect((await h2Once(h2only, { path: '/api/x' })).status).toBe(200);
    await expect(request(`${h2only}/api/x`)).rejects.toThrow();
    const { origin: h1only } = await start(undefined, '    protocols: [http1]');
    expect((await request(`${h1only}/api/x`)).statusCode).toBe(200);
    await expect(h2Once(h1only, { path: '/api/x', timeoutMs: 2000 })).rejects.toThrow();
  });

  it.each([
    ['never sends a byte', ''],
    ['stops inside the HTTP/2 preface', 'PRI * HTTP/2.0\r\n'],
    ['stops at a P that could start either protocol', 'P'],
  ])('closes a plaintext connection that %s within headersTimeout', async (_what, bytes) => {
    const { t, upstream } = await start(undefined, '    limits: { headersTimeout: 300ms }');
    const socket = net.connect(t.port, '127.0.0.1');
    socket.on('error', () => {});
    if (bytes !== '') socket.write(bytes);
    const closed = new Promise<boolean>((resolve) => socket.once('close', () => resolve(true)));
    expect(await Promise.race([closed, new Promise((r) => setTimeout(() => r(false), 3000))])).toBe(true);
    expect(upstream.seen).toHaveLength(0);
  });

  it('an upstream that cuts its body mid-way resets the stream: never a clean end', async () => {
    const { origin } = await start((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const answer = await h2Once(origin, { path: '/api/cut' });
    expect(answer.rstCode).not.toBe(0);
    expect(answer.body.toString()).toBe('only part');
  });

  it('drain: an HTTP/2 client gets GOAWAY, its stream in flight finishes', async () => {
    let release: (() => void) | null = null;
    const { origin, t } = await start((_req, res) => {
      release = () => res.end('late');
    });
    const s = session(origin);
    const goaway = new Promise<boolean>((resolve) => s.once('goaway', () => resolve(true)));
    const inflight = h2Request(s, { path: '/api/held' });
    expect(await eventually(() => release !== null)).toBe(true);
    const drained = t.tandem.drain();
    expect(await goaway).toBe(true);
    release!();
    const answer = await inflight;
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe('late');
    await drained;
  });
});

describe('h2 and http/1.1 by ALPN on a TLS port', () => {
  let certs: CertDir;
  beforeAll(() => {
    certs = certDir();
    certs.make('ca', '/CN=Test CA', { isCa: true });
    certs.make('server', '/CN=server', { ca: 'ca', san: 'IP:127.0.0.1,DNS:localhost' });
  });
  const tlsBlock = (): string => `    tls: { certFile: ${certs.file('server.crt')}, keyFile: ${certs.file('server.key')} }`;

  it('serves h2 and HTTP/1.1 over TLS on one port; x-forwarded-proto is https', async () => {
    const { upstream, t } = await start(undefined, tlsBlock());
    const origin = `https://127.0.0.1:${t.port}`;
    const h2 = await h2Once(origin, { path: '/api/secure' }, { ca: certs.pem('ca.crt') });
    expect(h2.status).toBe(200);
    const h1 = await new Promise<number>((resolve, reject) => {
      https
        .get(`${origin}/api/secure1`, { ca: certs.pem('ca.crt') }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        })
        .on('error', reject);
    });
    expect(h1).toBe(200);
    expect(upstream.seen.map((s) => [s.url, s.headers['x-forwarded-proto']])).toEqual([
      ['/api/secure', 'https'],
      ['/api/secure1', 'https'],
    ]);
  });

  it('protocols: [http1] on TLS does not offer h2', async () => {
    const { t } = await start(undefined, `${tlsBlock()}\n    protocols: [http1]`);
    await expect(h2Once(`https://127.0.0.1:${t.port}`, { path: '/api/x', timeoutMs: 2000 }, { ca: certs.pem('ca.crt') })).rejects.toThrow();
  });
});

describe('listeners[].protocols in the configuration', () => {
  it.each([
    ['h2 on a plaintext listener', '    protocols: [http1, h2]', 'listeners.0.protocols.1: h2 needs tls on the listener; plaintext HTTP/2 is h2c'],
    ['a protocol listed twice', '    protocols: [h2c, h2c]', 'listeners.0.protocols.1: h2c is listed twice'],
  ])('refuses %s, naming the line and key', (_what, extra, message) => {
    const loaded = loadConfigText(config(1, extra), 'p.yaml');
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    const text = loaded.errors.map(formatConfigError).join('\n');
    expect(text).toContain(message);
    expect(text).toMatch(/^p\.yaml:\d+:\d+: /);
  });

  it('defaults to both protocols of the listener kind', () => {
    const loaded = loadConfigText(config(1), 'p.yaml');
    expect(loaded.ok && loaded.config.listeners[0]!.protocols).toEqual(['http1', 'h2c']);
  });
});
