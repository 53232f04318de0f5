import { describe, expect, it } from 'vitest';
import { rawRequest, simpleConfig, startTandem, startUpstream, statusOf, useCleanup, waitForAccessLog } from './support/harness.js';
import { clientFor, PROTOCOLS } from './support/client.js';
import { h2Connect, h2Request } from './support/http2.js';

const cleanup = useCleanup();

describe.each(PROTOCOLS)('proxying over %s', (protocol) => {
  const client = clientFor(protocol, cleanup);

  it('forwards a GET and streams the answer back with x-request-id', async () => {
    const up = await startUpstream((_req, res) => {
      res.writeHead(201, { 'x-app': 'yes' });
      res.end('hello');
    });
    cleanup.add(up);
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const res = await client.request(`${t.url}/a/b?x=1`);
    expect(res.statusCode).toBe(201);
    expect(await res.body.text()).toBe('hello');
    expect(res.headers['x-app']).toBe('yes');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(up.seen[0]!.url).toBe('/a/b?x=1');
    expect(up.seen[0]!.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(up.seen[0]!.headers['x-forwarded-proto']).toBe('http');
    expect(up.seen[0]!.headers['x-request-id']).toBe(res.headers['x-request-id']);
    const log = await waitForAccessLog(t);
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ method: 'GET', path: '/a/b?x=1', status: 201, route: 'all', cluster: 'app', attempts: 1, flags: [] });
    expect(log[0]!.protocol).toBe(protocol === 'http1' ? 'HTTP/1.1' : 'HTTP/2');
  });

  it("passes the upstream's trailers to a client that takes them (TE: trailers)", async () => {
    const up = cleanup.add(
      await startUpstream((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
        res.write('body');
        res.addTrailers({ 'x-checksum': 'abc' });
        res.end();
      }),
    );
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const res = await client.request(`${t.url}/t`, { headers: { te: 'trailers' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.text()).toBe('body');
    expect(res.trailers['x-checksum']).toBe('abc');
    expect(up.seen[0]!.headers.te).toBe('trailers');
  });
});

describe('HTTP/1.1 only', () => {
  it('forwards a POST body from curl-like clients (Expect: 100-continue)', async () => {
    const up = await startUpstream((_req, res, body) => res.end(`got ${body.length}`));
    cleanup.add(up);
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const body = 'x'.repeat(5000);
    const raw = await rawRequest(
      t.port,
      `POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(raw.text).toContain('HTTP/1.1 100 Continue');
    expect(raw.text).toContain('got 5000');
    expect(up.seen[0]!.headers.expect).toBeUndefined();
  });

  it('answers 400 and closes on a duplicate Host', async () => {
    const up = await startUpstream();
    cleanup.add(up);
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const raw = await rawRequest(t.port, 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    expect(statusOf(raw.text)).toBe(400);
    expect(raw.closed).toBe(true);
    expect(raw.text).toContain('x-tandem-error: bad_request');
    expect(up.seen).toHaveLength(0);
  });
});

describe('HTTP/2 only', () => {
  // where HTTP/1.1 closes the connection on a malformed Host (above), HTTP/2 refuses the one stream
  it('answers 400 to a stream whose Host differs from its :authority and serves the next one on the same connection', async () => {
    const up = cleanup.add(await startUpstream());
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const session = h2Connect(t.url);
    cleanup.add({ close: () => void session.destroy() });
    const refused = await h2Request(session, { path: '/two', headers: { ':authority': 'a', host: 'b' } });
    expect(refused.status).toBe(400);
    expect(refused.headers['x-tandem-error']).toBe('bad_request');
    const next = await h2Request(session, { path: '/next' });
    expect(next.status).toBe(200);
    expect(next.body.toString()).toBe('ok');
    expect(up.seen.map((s) => s.url)).toEqual(['/next']);
  });
});
