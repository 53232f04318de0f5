// gRPC end to end (docs/grpc.md): a real @grpc/grpc-js client calls a real
// grpc-js server through tandem, over h2c and over TLS h2 on either side:
// the four kinds of call, metadata both ways (binary -bin values included)
// and trailers, deadlines, every status code, 4 MiB messages, and tandem's
// own errors as gRPC statuses.

import * as grpc from '@grpc/grpc-js';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certDir, listenerTls, type CertDir } from './support/certs.js';
import { ECHO_PREFIX, MESSAGE_LIMITS, echoClient, settle, startEchoServer, TRAILER_BIN, unary, type EchoClient, type EchoReply, type EchoServer } from './support/grpc-echo.js';
import { startH2Upstream } from './support/h2-upstream.js';
import { h2Once } from './support/http2.js';
import { deadPort, metricValue, simpleConfig, startTandem, startUpstream, useCleanup, waitForAccessLog, type RunningTandem } from './support/harness.js';

const cleanup = useCleanup();

let certs: CertDir;
beforeAll(() => {
  certs = certDir('tandem-grpc-e2e-');
  certs.make('ca', '/CN=Test CA', { isCa: true });
  certs.make('server', '/CN=server', { ca: 'ca', san: 'IP:127.0.0.1' });
});

type H2 = 'h2c' | 'h2';

/**
 * tandem in front of the echo server: route `echo` for the service, `capped`
 * (maxGrpcTimeout 300ms) for calls with x-route: capped, `dead` to a port
 * nobody listens on for x-route: dead; nothing else has a route.
 */
async function front(client: H2, upstream: H2, server: EchoServer): Promise<RunningTandem> {
  const serverTls = client === 'h2' ? `\n    ${listenerTls(certs)}` : '';
  const clusterTls = upstream === 'h2' ? `\n    tls: { caFile: ${certs.file('ca.crt')} }` : '';
  return cleanup.add(
    await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0${serverTls}
    routes:
      - name: capped
        match: { prefix: ${ECHO_PREFIX}, headers: [{ name: x-route, exact: capped }] }
        cluster: echo
        maxGrpcTimeout: 300ms
      - name: dead
        match: { prefix: ${ECHO_PREFIX}, headers: [{ name: x-route, exact: dead }] }
        cluster: dead
      - name: echo
        match: { prefix: ${ECHO_PREFIX} }
        cluster: echo
        timeout: 10s
clusters:
  - name: echo
    protocol: ${upstream}${clusterTls}
    endpoints: [127.0.0.1:${server.port}]
  - name: dead
    protocol: h2c
    endpoints: [127.0.0.1:${await deadPort()}]
`),
  );
}

function metadata(pairs: Record<string, string | Buffer>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(pairs)) md.set(k, v);
  return md;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * undici (8.13.1, 8.14.1) loses the part of an HTTP/2 response body still
 * buffered in a paused stream when the trailers arrive: with backpressure
 * from the client, a reply over 64 KiB reaches it cut, ending cleanly with
 * its grpc-status. The tests of large replies wait for a fix.
 */
const UNDICI_H2_TRAILER_TRUNCATION = false;

const sides: [H2, H2][] = [
  ['h2c', 'h2c'],
  ['h2', 'h2'],
  ['h2c', 'h2'],
  ['h2', 'h2c'],
];

describe.each(sides)('grpc-js client over %s, tandem to a grpc-js server over %s', (clientSide, upstreamSide) => {
  let server: EchoServer;
  beforeAll(async () => {
    server = await startEchoServer(upstreamSide === 'h2' ? { key: certs.pem('server.key'), cert: certs.pem('server.crt') } : undefined);
  });
  afterAll(() => server.close());

  async function connect(): Promise<{ t: RunningTandem; client: EchoClient }> {
    server.seen.length = 0;
    const t = await front(clientSide, upstreamSide, server);
    const client = echoClient(`127.0.0.1:${t.port}`, clientSide === 'h2' ? certs.pem('ca.crt') : undefined);
    cleanup.add({ close: () => client.close() });
    return { t, client };
  }

  it('unary: the reply, request metadata up (a -bin value intact), initial metadata and trailers down; logged as HTTP/2 with grpcStatus 0', async () => {
    const { t, client } = await connect();
    const blob = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const res = await unary(client, { text: 'hello' }, metadata({ 'x-md-note': 'hi there', 'x-md-blob-bin': blob }));
    expect(res.status.code).toBe(grpc.status.OK);
    expect(res.replies.map((r) => r.text)).toEqual(['hello']);
    expect(server.seen[0]!.metadata.get('x-md-note')).toEqual(['hi there']);
    expect(server.seen[0]!.metadata.get('x-md-blob-bin')).toEqual([blob]);
    expect(res.metadata!.get('echo-x-md-note')).toEqual(['hi there']);
    expect(res.metadata!.get('echo-x-md-blob-bin')).toEqual([blob]);
    expect(res.status.metadata.get('x-trailer')).toEqual(['done']);
    expect(res.status.metadata.get('x-trailer-bin')).toEqual([TRAILER_BIN]);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ route: 'echo', status: 200, protocol: 'HTTP/2', grpcStatus: 0, path: '/tandem.test.Echo/Unary' });
  });

  it('server streaming: every reply in order, then the trailers', async () => {
    const { client } = await connect();
    const res = await settle<EchoReply>(client.ServerStream({ text: 's', count: 40, replyBytes: 1000 }, new grpc.Metadata(), {}));
    expect(res.status.code).toBe(grpc.status.OK);
    expect(res.replies.map((r) => r.index)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(res.replies.every((r) => r.payload.length === 1000 && r.payload[0] === r.index % 256)).toBe(true);
    expect(res.status.metadata.get('x-trailer')).toEqual(['done']);
  });

  it('client streaming: every request reaches the server, one reply counts them', async () => {
    const { client } = await connect();
    const replies: EchoReply[] = [];
    const call = client.ClientStream(new grpc.Metadata(), {}, (_err, r) => r && replies.push(r));
    const done = settle(call, replies);
    for (let i = 0; i < 30; i++) call.write({ text: String(i), payload: Buffer.alloc(2000, i) });
    call.end();
    const res = await done;
    expect(res.status.code).toBe(grpc.status.OK);
    expect(res.replies).toHaveLength(1);
    expect(res.replies[0]!.text).toBe(Array.from({ length: 30 }, (_, i) => String(i)).join(','));
    expect(res.replies[0]!.index).toBe(30 * 2000);
  });

  it('bidirectional: each request answered before the next is sent (nothing waits for the end of either stream)', async () => {
    const { client } = await connect();
    const call = client.Bidi(new grpc.Metadata(), {});
    const done = settle<EchoReply>(call);
    const texts: string[] = [];
    for (let i = 0; i < 10; i++) {
      const next = new Promise<EchoReply>((resolve) => call.once('data', resolve));
      call.write({ text: `ping ${i}` });
      texts.push((await next).text);
    }
    call.end();
    const res = await done;
    expect(texts).toEqual(Array.from({ length: 10 }, (_, i) => `ping ${i}`));
    expect(res.status.code).toBe(grpc.status.OK);
    expect(res.status.metadata.get('x-trailer')).toEqual(['done']);
  });

  it.skipIf(UNDICI_H2_TRAILER_TRUNCATION)('carries 4 MiB messages both ways', async () => {
    const { client } = await connect();
    const payload = randomBytes(4 * 1024 * 1024);
    const res = await unary(client, { text: 'big', payload });
    expect(res.status.code).toBe(grpc.status.OK);
    expect(res.replies[0]!.payload.length).toBe(payload.length);
    expect(sha(res.replies[0]!.payload)).toBe(sha(payload));
    const streamed = await settle<EchoReply>(client.ServerStream({ count: 2, replyBytes: 4 * 1024 * 1024 }, new grpc.Metadata(), {}));
    expect(streamed.status.code).toBe(grpc.status.OK);
    expect(streamed.replies.map((r) => r.payload.length)).toEqual([4 * 1024 * 1024, 4 * 1024 * 1024]);
  });

  it('passes every status code 1-16 from the server with its message intact, trailers-only or after a reply', async () => {
    const { t, client } = await connect();
    const codes = Array.from({ length: 16 }, (_, i) => i + 1);
    const message = (code: number): string => `status ${code}: ünïcödé, 100% "quoted"\ttab`;
    const only = await Promise.all(codes.map((code) => unary(client, { status: code, text: message(code) })));
    expect(only.map((r) => [r.status.code, r.status.details])).toEqual(codes.map((c) => [c, message(c)]));
    const afterReply = await Promise.all(
      codes.map((code) => settle<EchoReply>(client.ServerStream({ status: code, text: message(code), count: 1 }, new grpc.Metadata(), {}))),
    );
    expect(afterReply.map((r) => [r.replies.length, r.status.code, r.status.details])).toEqual(codes.map((c) => [1, c, message(c)]));
    expect(afterReply.every((r) => r.status.metadata.get('x-trailer')[0] === 'done')).toBe(true);
    const names = Object.entries(grpc.status).filter(([, v]) => typeof v === 'number' && v !== 0);
    for (const [name] of names) {
      expect(await metricValue(t.adminUrl, 'tandem_grpc_requests_total', { route: 'echo', grpc_code: name })).toBe(2);
    }
    const logged = await waitForAccessLog(t, 32);
    expect(logged.map((l) => l.grpcStatus as number).sort((a, b) => a - b)).toEqual(codes.flatMap((c) => [c, c]));
  });

  it("sends the client's deadline on as grpc-timeout, the time left", async () => {
    const { client } = await connect();
    const res = await unary(client, { text: 'd' }, new grpc.Metadata(), { deadline: Date.now() + 3000 });
    expect(res.status.code).toBe(grpc.status.OK);
    expect(server.seen[0]!.deadlineMs).toBeGreaterThan(2000);
    expect(server.seen[0]!.deadlineMs).toBeLessThanOrEqual(3000);
  });

  it('a deadline that passes ends the call DEADLINE_EXCEEDED at the deadline, not when the server answers', async () => {
    const { client } = await connect();
    const started = Date.now();
    const res = await unary(client, { text: 'slow', delayMs: 3000 }, new grpc.Metadata(), { deadline: Date.now() + 300 });
    expect(res.status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("maxGrpcTimeout caps a longer deadline: tandem's own DEADLINE_EXCEEDED, the server told the cap", async () => {
    const { t, client } = await connect();
    const started = Date.now();
    const res = await unary(client, { text: 'slow', delayMs: 3000 }, metadata({ 'x-route': 'capped' }), { deadline: Date.now() + 10_000 });
    expect(res.status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(res.status.metadata.get('x-tandem-error')).toEqual(['upstream_timeout']);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(server.seen[0]!.deadlineMs).toBeLessThanOrEqual(300);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ route: 'capped', grpcStatus: 4, flags: ['UT'] });
  });

  it("answers tandem's own errors as gRPC statuses: no route UNIMPLEMENTED, a dead upstream UNAVAILABLE", async () => {
    const { client } = await connect();
    const noRoute = await settle<Buffer>(
      client.makeUnaryRequest('/tandem.test.Missing/Call', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), new grpc.Metadata(), {}, () => undefined),
    );
    expect(noRoute.status.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(noRoute.status.metadata.get('x-tandem-error')).toEqual(['no_route']);
    const dead = await unary(client, { text: 'x' }, metadata({ 'x-route': 'dead' }));
    expect(dead.status.code).toBe(grpc.status.UNAVAILABLE);
    expect(dead.status.metadata.get('x-tandem-error')).toEqual(['upstream_connect_failure']);
    expect(dead.status.details).not.toBe('');
  });
});

/** One gRPC message: flag byte, 4-byte length, payload. */
function frame(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

const raw = (b: Buffer): Buffer => b;

/** A unary call with raw bytes for messages, for upstreams that frame gRPC by hand. */
function rawUnary(client: grpc.Client, path: string, message: Buffer): Promise<{ replies: Buffer[]; metadata: grpc.Metadata | null; status: grpc.StatusObject }> {
  const replies: Buffer[] = [];
  return settle(
    client.makeUnaryRequest(path, raw, raw, message, new grpc.Metadata(), {}, (_err, r) => r && replies.push(r)),
    replies,
  );
}

function rawClient(t: RunningTandem): grpc.Client {
  const client = new grpc.Client(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure(), MESSAGE_LIMITS);
  cleanup.add({ close: () => client.close() });
  return client;
}

describe('grpc-js client over h2c to upstreams that are not grpc-js', () => {
  it('an HTTP/1.1 upstream: the body framed as sent, grpc-status in chunked trailers reaching the client as trailing HEADERS', async () => {
    const upstream = cleanup.add(
      await startUpstream((req, res, body) => {
        const status = req.url!.endsWith('/Fail') ? '5' : '0';
        res.writeHead(200, { 'content-type': 'application/grpc', trailer: 'grpc-status, grpc-message' });
        res.write(frame(Buffer.from(`got ${body.length - 5} bytes over ${req.headers.te}`)));
        res.addTrailers({ 'grpc-status': status, 'grpc-message': status === '0' ? '' : 'not%20here', 'x-trailer': 'h1' });
        res.end();
      }),
    );
    const t = cleanup.add(await startTandem(simpleConfig([upstream.port])));
    const client = rawClient(t);
    const ok = await rawUnary(client, '/any.Service/Call', Buffer.from('hello'));
    expect(ok.status.code).toBe(grpc.status.OK);
    expect(ok.replies.map(String)).toEqual(['got 5 bytes over trailers']);
    expect(ok.status.metadata.get('x-trailer')).toEqual(['h1']);
    const failed = await rawUnary(client, '/any.Service/Fail', Buffer.from('hello'));
    expect([failed.status.code, failed.status.details]).toEqual([grpc.status.NOT_FOUND, 'not here']);
    expect(upstream.seen.map((s) => [s.method, s.url, s.headers['content-type']])).toEqual([
      ['POST', '/any.Service/Call', 'application/grpc'],
      ['POST', '/any.Service/Fail', 'application/grpc'],
    ]);
    expect((await waitForAccessLog(t, 2)).map((l) => l.grpcStatus)).toEqual([0, 5]);
  });

  it('an HTTP/1.1 upstream: 4 MiB messages both ways', async () => {
    const upstream = cleanup.add(
      // the harness hands the body over as text: an ASCII payload survives it
      await startUpstream((_req, res, body) => {
        res.writeHead(200, { 'content-type': 'application/grpc' });
        res.addTrailers({ 'grpc-status': '0' });
        res.end(frame(Buffer.from(body).subarray(5)));
      }),
    );
    const t = cleanup.add(await startTandem(simpleConfig([upstream.port])));
    const payload = Buffer.alloc(4 * 1024 * 1024, 'ab');
    const res = await rawUnary(rawClient(t), '/any.Service/Big', payload);
    expect(res.status.code).toBe(grpc.status.OK);
    expect(sha(res.replies[0]!)).toBe(sha(payload));
  });

  it('a node:http2 upstream: messages then trailers, and a trailers-only answer reaching the client as one', async () => {
    const upstream = cleanup.add(
      await startH2Upstream((stream, seen) => {
        if (seen.headers[':path'] === '/any.Service/Only') {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': 'nope' }, { endStream: true });
          return;
        }
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-trailer': 'h2' }));
        stream.end(frame(seen.body.subarray(5)));
      }),
    );
    const t = cleanup.add(await startTandem(simpleConfig([upstream.port], '', 'protocol: h2c')));
    const client = rawClient(t);
    const ok = await rawUnary(client, '/any.Service/Call', Buffer.from('echo me'));
    expect(ok.status.code).toBe(grpc.status.OK);
    expect(ok.replies.map(String)).toEqual(['echo me']);
    expect(ok.status.metadata.get('x-trailer')).toEqual(['h2']);
    const only = await rawUnary(client, '/any.Service/Only', Buffer.from('x'));
    expect([only.status.code, only.status.details, only.metadata]).toEqual([grpc.status.PERMISSION_DENIED, 'nope', null]);
    expect((await waitForAccessLog(t, 2)).map((l) => l.grpcStatus)).toEqual([0, 7]);
  });

  it.skipIf(UNDICI_H2_TRAILER_TRUNCATION)('an h2c upstream reply larger than the client\'s stream window arrives whole before its trailers', async () => {
    const size = 100_000;
    const upstream = cleanup.add(
      await startH2Upstream((stream) => {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(frame(Buffer.alloc(size, 7)));
      }),
    );
    const t = cleanup.add(await startTandem(simpleConfig([upstream.port], '', 'protocol: h2c')));
    const res = await h2Once(t.url, { method: 'POST', path: '/any.Service/Big', headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: frame(Buffer.alloc(0)) });
    expect(res.trailers?.['grpc-status']).toBe('0');
    expect(res.body.length).toBe(size + 5);
  });
});
