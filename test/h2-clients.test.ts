// Command-line HTTP/2 clients against tandem: curl (--http2-prior-knowledge
// on the plaintext port, --http2 by ALPN on TLS) and nghttp2-client's nghttp
// and h2load, which exit non-zero on anything that is not valid HTTP/2.
// tandem runs in this process, so the clients run asynchronously.

import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { certDir, listenerTls, type CertDir } from './support/certs.js';
import { simpleConfig, startTandem, startUpstream, tempDir, useCleanup, type RunningTandem, type Upstream } from './support/harness.js';

const cleanup = useCleanup();
const run = promisify(execFile);

let certs: CertDir;
beforeAll(() => {
  certs = certDir('tandem-h2-clients-');
  certs.make('ca', '/CN=Test CA', { isCa: true });
  certs.make('server', '/CN=server', { ca: 'ca', san: 'IP:127.0.0.1,DNS:localhost' });
});

/** An HTTP/1.1 upstream answering with the request's method, path and body, and a trailer. */
async function echoUpstream(): Promise<Upstream> {
  return cleanup.add(
    await startUpstream((req, res, body) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream': 'h1', trailer: 'x-checksum' });
      res.write(`${req.method} ${req.url}`);
      res.addTrailers({ 'x-checksum': String(body.length) });
      res.end(body === '' ? '' : ` ${body}`);
    }),
  );
}

async function front(upstream: Upstream, tls: boolean): Promise<RunningTandem> {
  return cleanup.add(await startTandem(simpleConfig([upstream.port], '', '', tls ? listenerTls(certs) : '')));
}

interface CurlAnswer {
  version: string;
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** curl -i: the status line, the header lines, then the body. */
async function curl(args: string[]): Promise<CurlAnswer> {
  const { stdout } = await run('curl', ['-sS', '-i', ...args], { timeout: 10_000 });
  const split = stdout.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = stdout.slice(0, split).split('\r\n');
  const [version, status] = statusLine!.split(' ');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { version: version!, status: Number(status), headers, body: stdout.slice(split + 4) };
}

describe('curl', () => {
  it('--http2-prior-knowledge on the plaintext port: HTTP/2, status, headers and body; a POST body reaches the upstream', async () => {
    const upstream = await echoUpstream();
    const t = await front(upstream, false);
    const get = await curl(['--http2-prior-knowledge', '-H', 'x-client: curl', `${t.url}/hello?x=1`]);
    expect([get.version, get.status, get.body]).toEqual(['HTTP/2', 200, 'GET /hello?x=1']);
    expect(get.headers['x-upstream']).toBe('h1');
    expect(get.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    const post = await curl(['--http2-prior-knowledge', '--data-binary', 'payload', `${t.url}/up`]);
    expect([post.version, post.status, post.body]).toEqual(['HTTP/2', 200, 'POST /up payload']);
    expect(upstream.seen.map((s) => [s.method, s.headers['x-client'], s.headers.host])).toEqual([
      ['GET', 'curl', `127.0.0.1:${t.port}`],
      ['POST', undefined, `127.0.0.1:${t.port}`],
    ]);
  });

  it('--http2 on the TLS port negotiates h2 by ALPN', async () => {
    const upstream = await echoUpstream();
    const t = await front(upstream, true);
    const res = await curl(['--http2', '--cacert', certs.file('ca.crt'), `https://127.0.0.1:${t.port}/secure`]);
    expect([res.version, res.status, res.body]).toEqual(['HTTP/2', 200, 'GET /secure']);
    expect(upstream.seen[0]!.headers['x-forwarded-proto']).toBe('https');
  });

  it('--http2 on the plaintext port (an Upgrade: h2c offer) is answered over HTTP/1.1', async () => {
    const upstream = await echoUpstream();
    const t = await front(upstream, false);
    const res = await curl(['--http2', `${t.url}/plain`]);
    expect([res.version, res.status]).toEqual(['HTTP/1.1', 200]);
    // a plain chunked answer: curl -i prints the upstream's trailer after the body
    expect(res.body).toBe('GET /plainx-checksum: 0\r\n');
    // the offer is declined, not passed on: the upstream sees a plain request
    const seen = upstream.seen[0]!;
    expect([seen.headers.upgrade, seen.headers['http2-settings']]).toEqual([undefined, undefined]);
    expect(seen.headers.connection ?? '').not.toMatch(/upgrade/i);
  });
});

/** nghttp's verbose frame log: the header fields it received, as "name: value". */
function received(log: string): string[] {
  return [...log.matchAll(/recv \(stream_id=\d+\) ([:a-z0-9-]+: .*)$/gm)].map((m) => m[1]!);
}

describe('nghttp2-client', () => {
  it('nghttp over h2c: status, headers, body and the upstream trailer as trailing HEADERS; exits 0', async () => {
    const upstream = await echoUpstream();
    const t = await front(upstream, false);
    const dir = tempDir();
    writeFileSync(`${dir}/body`, 'x'.repeat(100_000));
    const { stdout } = await run('nghttp', ['-v', '-d', `${dir}/body`, '-H', 'te: trailers', `${t.url}/data`], { timeout: 10_000, maxBuffer: 8 * 1024 * 1024 });
    const fields = received(stdout);
    expect(fields).toContain(':status: 200');
    expect(fields).toContain('x-upstream: h1');
    expect(fields).toContain('x-checksum: 100000');
    expect(stdout).toContain('POST /data');
    expect(upstream.seen[0]!.body.length).toBe(100_000);
  });

  it('nghttp over TLS h2 with many concurrent streams on one connection; exits 0', async () => {
    const upstream = await echoUpstream();
    const t = await front(upstream, true);
    const urls = Array.from({ length: 20 }, (_, i) => `https://127.0.0.1:${t.port}/s${i}`);
    const { stdout } = await run('nghttp', ['-ns', ...urls], { timeout: 10_000 });
    // the statistics list each request once it completed, by its path
    for (let i = 0; i < 20; i++) expect(stdout).toMatch(new RegExp(` 200 .* /s${i}$`, 'm'));
    expect(upstream.seen.map((s) => s.url).sort()).toEqual(urls.map((u) => new URL(u).pathname).sort());
  });

  it('h2load: every request succeeds over h2c, several streams at once per connection', async () => {
    const upstream = await echoUpstream();
    const t = await front(upstream, false);
    const { stdout } = await run('h2load', ['-n', '200', '-c', '2', '-m', '10', `${t.url}/load`], { timeout: 30_000 });
    expect(stdout).toMatch(/requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored/);
    expect(stdout).toMatch(/status codes: 200 2xx/);
    expect(upstream.seen).toHaveLength(200);
  });
});
