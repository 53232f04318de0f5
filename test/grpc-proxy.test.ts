// gRPC semantics over real sockets (docs/grpc.md): tandem's errors as
// trailers-only answers, grpc-timeout as the request's deadline, the gRPC
// retryOn conditions, gRPC failure statuses feeding the breaker and outlier
// detection, the metric and the access log. The upstream speaks HTTP/1.1
// carrying gRPC-shaped messages (content type, length-prefixed frames,
// grpc-status in headers or trailers); the clients are HTTP/1.1, node:http2
// over h2c, and a grpc-js client for what it makes of tandem's errors.

import http from 'node:http';
import http2, { type ServerHttp2Stream } from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  deadPort,
  metricValue,
  simpleConfig,
  startTandem,
  startUpstream,
  useCleanup,
  waitForAccessLog,
} from './support/harness.js';
import { startH2Upstream } from './support/h2-upstream.js';
import { h2Connect, h2Once, h2Request, type H2Answer } from './support/http2.js';

const cleanup = useCleanup();

/** One length-prefixed gRPC message: flag byte, 4-byte length, payload. */
function frame(payload: string): Buffer {
  const bytes = Buffer.from(payload);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(bytes.length, 1);
  return Buffer.concat([head, bytes]);
}

interface GrpcAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  trailers: NodeJS.Dict<string>;
  ms: number;
}

interface CallOptions {
  headers?: Record<string, string>;
  body?: Buffer;
  /** send the body chunked (no content-length), as a streaming client does */
  chunked?: boolean;
  contentType?: string;
  method?: string;
}

/** A unary call over HTTP/1.1: POST, gRPC content type, one framed message. */
function call(port: number, path: string, opts: CallOptions = {}): Promise<GrpcAnswer> {
  const body = opts.body ?? frame('hello');
  const headers: Record<string, string> = { 'content-type': opts.contentType ?? 'application/grpc', te: 'trailers', ...opts.headers };
  if (!opts.chunked) headers['content-length'] = String(body.length);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), trailers: res.trailers, ms: performance.now() - started }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.chunked) {
      // Two writes far enough apart that tandem forwards the first before the
      // second comes: a body already complete at dispatch goes up with a length.
      req.write(body.subarray(0, 2));
      setTimeout(() => req.end(body.subarray(2)), 100);
    } else {
      req.end(body);
    }
  });
}

type Reply = 'ok' | { trailersOnly: number } | { trailers: number } | { delayMs: number; then: Reply };

/** The protocols of the clusters the upstream-facing tests run against. */
const UPSTREAMS = ['http1', 'h2c'] as const;
type UpstreamProtocol = (typeof UPSTREAMS)[number];

/** One answer, written the way the upstream's protocol frames it. */
interface AnswerSink {
  head(fields: Record<string, string>, endStream: boolean): void;
  message(bytes: Buffer): void;
  end(trailers: Record<string, string>): void;
  onClose(fn: () => void): void;
}

interface GrpcUpstream {
  readonly port: number;
  /** every request the upstream read to its end, in order */
  readonly seen: { method: string; headers: http.IncomingHttpHeaders; body: Buffer }[];
  /** the cluster lines that reach it */
  readonly cluster: string;
}

/** A gRPC-shaped upstream answering from a script, one reply per request (the last one repeats). */
async function grpcUpstream(script: Reply[], protocol: UpstreamProtocol = 'http1'): Promise<GrpcUpstream> {
  let n = 0;
  const answer = (sink: AnswerSink, reply: Reply, tryNo: number): void => {
    if (reply === 'ok') reply = { trailers: 0 };
    if ('delayMs' in reply) {
      const next = reply.then;
      const timer = setTimeout(() => answer(sink, next, tryNo), reply.delayMs);
      sink.onClose(() => clearTimeout(timer));
      return;
    }
    if ('trailersOnly' in reply) {
      sink.head({ 'content-type': 'application/grpc', 'grpc-status': String(reply.trailersOnly), 'grpc-message': 'from the app', 'x-try': String(tryNo) }, true);
      return;
    }
    sink.head({ 'content-type': 'application/grpc', 'x-try': String(tryNo) }, false);
    sink.message(frame(`reply ${tryNo}`));
    sink.end({ 'grpc-status': String(reply.trailers), 'grpc-message': reply.trailers === 0 ? '' : 'failed' });
  };
  const next = (sink: AnswerSink): void => {
    n++;
    answer(sink, script[Math.min(n - 1, script.length - 1)]!, n);
  };
  if (protocol === 'h2c') {
    const up = cleanup.add(await startH2Upstream((stream) => next(h2Sink(stream))));
    return {
      port: up.port,
      get seen() {
        return up.seen.map((r) => ({ method: r.headers[':method']!, headers: r.headers, body: r.body }));
      },
      cluster: 'protocol: h2c',
    };
  }
  const up = cleanup.add(await startUpstream((_req, res) => next(http1Sink(res))));
  return {
    port: up.port,
    get seen() {
      return up.seen.map((r) => ({ method: r.method, headers: r.headers, body: Buffer.from(r.body) }));
    },
    cluster: '',
  };
}

function http1Sink(res: http.ServerResponse): AnswerSink {
  return {
    head(fields, endStream) {
      res.writeHead(200, endStream ? fields : { ...fields, trailer: 'grpc-status, grpc-message' });
      if (endStream) res.end();
    },
    message: (bytes) => void res.write(bytes),
    end(trailers) {
      res.addTrailers(trailers);
      res.end();
    },
    onClose: (fn) => void res.on('close', fn),
  };
}

function h2Sink(stream: ServerHttp2Stream): AnswerSink {
  let trailers: Record<string, string> = {};
  return {
    head(fields, endStream) {
      stream.respond({ ':status': 200, ...fields }, endStream ? { endStream } : { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    },
    message: (bytes) => void stream.write(bytes),
    end(t) {
      trailers = t;
      stream.end();
    },
    onClose: (fn) => void stream.on('close', fn),
  };
}

function grpcRequests(adminUrl: string, route: string, code: string): Promise<number | undefined> {
  return metricValue(adminUrl, 'tandem_grpc_requests_total', { listener: 'inbound', route, grpc_code: code });
}

/** Asserts a trailers-only answer from tandem itself: HTTP 200, gRPC content type, the status in the head, no body. */
function expectTrailersOnly(res: GrpcAnswer, grpcStatus: number, code: string): void {
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toBe('application/grpc');
  expect(res.headers['grpc-status']).toBe(String(grpcStatus));
  expect(res.headers['grpc-message']).toEqual(expect.any(String));
  expect(res.headers['grpc-message']!.length).toBeGreaterThan(0);
  expect(res.headers['x-tandem-error']).toBe(code);
  expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  expect(res.body.length).toBe(0);
  expect(res.trailers).toEqual({});
}

describe("tandem's own errors to a gRPC request", () => {
  it('no route: trailers-only UNIMPLEMENTED, counted under no_route and logged with its grpcStatus', async () => {
    const up = await grpcUpstream(['ok']);
    const t = cleanup.add(
      await startTandem(simpleConfig([up.port]).replace('match: { prefix: / }', 'match: { prefix: /helloworld.Greeter/ }')),
    );
    const res = await call(t.port, '/other.Service/Call');
    expectTrailersOnly(res, 12, 'no_route');
    expect(res.headers['grpc-message']).toBe('no route matched the request');
    // a request that is not gRPC still gets the JSON error
    const plain = await call(t.port, '/other.Service/Call', { contentType: 'application/json' });
    expect(plain.status).toBe(404);
    expect(plain.headers['content-type']).toBe('application/json');
    expect(JSON.parse(plain.body.toString())).toMatchObject({ error: 'no_route' });

    expect(await grpcRequests(t.adminUrl, 'no_route', 'UNIMPLEMENTED')).toBe(1);
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'no_route', code: '200' })).toBe(1);
    expect(await metricValue(t.adminUrl, 'tandem_requests_total', { route: 'no_route', code: '404' })).toBe(1);
    const lines = await waitForAccessLog(t, 2);
    expect(lines[0]).toMatchObject({ status: 200, grpcStatus: 12, protocol: 'HTTP/1.1', route: null, flags: ['NR'] });
    expect(lines[1]).toMatchObject({ status: 404, grpcStatus: null, protocol: 'HTTP/1.1' });
    expect(up.seen).toHaveLength(0);
  });

  it('connect failure: UNAVAILABLE, flag UF; a gRPC content type with a suffix is gRPC too', async () => {
    const t = cleanup.add(await startTandem(simpleConfig([await deadPort()])));
    const res = await call(t.port, '/helloworld.Greeter/SayHello', { contentType: 'application/grpc+proto' });
    expectTrailersOnly(res, 14, 'upstream_connect_failure');
    expect(await grpcRequests(t.adminUrl, 'all', 'UNAVAILABLE')).toBe(1);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 200, grpcStatus: 14, attempts: 2 });
    expect([...(line!.flags as string[])].sort()).toEqual(['UF', 'URX']);
  });

  it('rate limited: RESOURCE_EXHAUSTED, with retry-after', async () => {
    const up = await grpcUpstream(['ok']);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], 'rateLimit: { requestsPerSecond: 0.001, burst: 1 }')));
    expect((await call(t.port, '/g.S/M')).trailers['grpc-status']).toBe('0');
    const res = await call(t.port, '/g.S/M');
    expectTrailersOnly(res, 8, 'rate_limited');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(await grpcRequests(t.adminUrl, 'all', 'OK')).toBe(1);
    expect(await grpcRequests(t.adminUrl, 'all', 'RESOURCE_EXHAUSTED')).toBe(1);
  });

  it('payload too large: RESOURCE_EXHAUSTED, and the connection closes as for any refused body', async () => {
    const up = await grpcUpstream(['ok']);
    const t = cleanup.add(
      await startTandem(simpleConfig([up.port]).replace('    port: 0\n', '    port: 0\n    limits: { maxBodyBytes: 16 }\n')),
    );
    const res = await call(t.port, '/g.S/M', { body: frame('x'.repeat(64)) });
    expectTrailersOnly(res, 8, 'payload_too_large');
    expect(res.headers.connection).toBe('close');
    expect(up.seen).toHaveLength(0);
  });
});

describe.each(UPSTREAMS)('an upstream gRPC answer (%s upstream)', (protocol) => {
  it('passes through as it is, grpc-status in the trailers counted and logged', async () => {
    const up = await grpcUpstream([{ trailers: 0 }, { trailers: 5 }, { trailersOnly: 7 }], protocol);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], '', up.cluster)));
    const ok = await call(t.port, '/g.S/M');
    expect(ok.status).toBe(200);
    expect(ok.body.equals(frame('reply 1'))).toBe(true);
    expect(ok.trailers['grpc-status']).toBe('0');
    const notFound = await call(t.port, '/g.S/M');
    expect(notFound.trailers).toMatchObject({ 'grpc-status': '5', 'grpc-message': 'failed' });
    const denied = await call(t.port, '/g.S/M');
    expect(denied.headers['grpc-status']).toBe('7');
    expect(denied.headers['x-tandem-error']).toBeUndefined();
    expect(denied.body.length).toBe(0);

    expect(await grpcRequests(t.adminUrl, 'all', 'OK')).toBe(1);
    expect(await grpcRequests(t.adminUrl, 'all', 'NOT_FOUND')).toBe(1);
    expect(await grpcRequests(t.adminUrl, 'all', 'PERMISSION_DENIED')).toBe(1);
    const lines = await waitForAccessLog(t, 3);
    expect(lines.map((l) => l.grpcStatus)).toEqual([0, 5, 7]);
    expect(lines.map((l) => l.status)).toEqual([200, 200, 200]);
  });
});

describe('an upstream answer without grpc-status', () => {
  it('an answer without grpc-status counts as gRPC clients read it; a plain request is not counted at all', async () => {
    const up = cleanup.add(await startUpstream((_req, res) => res.writeHead(503, { 'content-type': 'text/plain' }).end('down')));
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const res = await call(t.port, '/g.S/M');
    expect(res.status).toBe(503);
    expect(res.body.toString()).toBe('down');
    await call(t.port, '/g.S/M', { contentType: 'text/plain' });
    expect(await grpcRequests(t.adminUrl, 'all', 'UNAVAILABLE')).toBe(1);
    const text = await (await fetch(`${t.adminUrl}/metrics`)).text();
    expect(text.match(/^tandem_grpc_requests_total\{/gm)).toHaveLength(1);
    const lines = await waitForAccessLog(t, 2);
    expect(lines.map((l) => l.grpcStatus)).toEqual([null, null]);
  });
});

describe('grpc-timeout', () => {
  /** A call with `grpcTimeout` to an upstream slower than any deadline here: it must end DEADLINE_EXCEEDED at `firesAtMs`. */
  async function expectDeadline(routeExtra: string, grpcTimeout: string, firesAtMs: number, upstreamGot: string) {
    const up = await grpcUpstream([{ delayMs: 3000, then: 'ok' }]);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], routeExtra)));
    const res = await call(t.port, '/g.S/M', { headers: { 'grpc-timeout': grpcTimeout } });
    expectTrailersOnly(res, 4, 'upstream_timeout');
    expect(res.ms).toBeGreaterThanOrEqual(firesAtMs - 5);
    expect(res.ms).toBeLessThan(firesAtMs + 1300);
    expect(up.seen[0]!.headers['grpc-timeout']).toBe(upstreamGot);
    return t;
  }

  it("replaces the route timeout: the call's own deadline fires first, DEADLINE_EXCEEDED, and the upstream got it as its grpc-timeout", async () => {
    const t = await expectDeadline('timeout: 10s\nmaxGrpcTimeout: 0', '200m', 200, '200000u');
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ grpcStatus: 4, flags: ['UT'] });
    expect(await grpcRequests(t.adminUrl, 'all', 'DEADLINE_EXCEEDED')).toBe(1);
  });

  it('is capped at maxGrpcTimeout, which defaults to the route timeout; the upstream gets the cap', async () => {
    await expectDeadline('timeout: 250ms', '1M', 250, '250000u');
    await expectDeadline('timeout: 10s\nmaxGrpcTimeout: 300ms', '20S', 300, '300000u');
  });

  it('lets a call outlive the route timeout when maxGrpcTimeout allows it', async () => {
    const up = await grpcUpstream([{ delayMs: 400, then: 'ok' }]);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 150ms\nmaxGrpcTimeout: 5s')));
    const res = await call(t.port, '/g.S/M', { headers: { 'grpc-timeout': '2S' } });
    expect(res.status).toBe(200);
    expect(res.trailers['grpc-status']).toBe('0');
    expect(up.seen[0]!.headers['grpc-timeout']).toBe('2000000u');
    // without a grpc-timeout, the route timeout holds
    const bare = await call(t.port, '/g.S/M');
    expectTrailersOnly(bare, 4, 'upstream_timeout');
    expect(up.seen[1]!.headers['grpc-timeout']).toBeUndefined();
  });

  it('is ignored when not in the wire format, and on a request that is not gRPC', async () => {
    const up = await grpcUpstream([{ delayMs: 600, then: 'ok' }]);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], 'timeout: 2s\nmaxGrpcTimeout: 0')));
    const bad = await call(t.port, '/g.S/M', { headers: { 'grpc-timeout': '100ms' } });
    expect(bad.trailers['grpc-status']).toBe('0');
    expect(up.seen[0]!.headers['grpc-timeout']).toBe('100ms');
    const plain = await call(t.port, '/g.S/M', { contentType: 'application/octet-stream', headers: { 'grpc-timeout': '100m' } });
    expect(plain.status).toBe(200);
    expect(plain.trailers['grpc-status']).toBe('0');
    expect(up.seen[1]!.headers['grpc-timeout']).toBe('100m');
  });

  it('passes each retry the time left, not the whole timeout', async () => {
    const up = await grpcUpstream([{ delayMs: 150, then: { trailersOnly: 14 } }, 'ok']);
    const t = cleanup.add(
      await startTandem(simpleConfig([up.port], 'maxGrpcTimeout: 0\nretries: { attempts: 1, retryOn: [unavailable], backoff: { base: 1ms, max: 1ms } }')),
    );
    const res = await call(t.port, '/g.S/M', { headers: { 'grpc-timeout': '3S' } });
    expect(res.trailers['grpc-status']).toBe('0');
    expect(up.seen).toHaveLength(2);
    const [first, second] = up.seen.map((s) => Number(/^(\d+)u$/.exec(s.headers['grpc-timeout'] as string)![1]) / 1000);
    // the timer runs from the end of the request, which the first try went out with
    expect(first).toBeLessThanOrEqual(3000);
    expect(first).toBeGreaterThan(2900);
    expect(second).toBeLessThanOrEqual(first! - 145);
    expect(second).toBeGreaterThan(2000);
  });
});

describe.each(UPSTREAMS)('gRPC retryOn conditions (%s upstream)', (protocol) => {
  const RETRY = 'retries: { attempts: 2, retryOn: [unavailable, resource-exhausted], backoff: { base: 1ms, max: 5ms } }';

  it('retry a trailers-only answer with a named status, POST or not, and send the body again', async () => {
    const up = await grpcUpstream([{ trailersOnly: 14 }, { trailersOnly: 8 }, 'ok'], protocol);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY, up.cluster)));
    const res = await call(t.port, '/g.S/M', { body: frame('payload') });
    expect(res.status).toBe(200);
    expect(res.headers['x-try']).toBe('3');
    expect(res.trailers['grpc-status']).toBe('0');
    expect(up.seen.map((s) => s.method)).toEqual(['POST', 'POST', 'POST']);
    for (const s of up.seen) expect(s.body.equals(frame('payload'))).toBe(true);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ status: 200, grpcStatus: 0, attempts: 3, flags: [] });
    expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(2);
    expect(await grpcRequests(t.adminUrl, 'all', 'OK')).toBe(1);
    expect(await grpcRequests(t.adminUrl, 'all', 'UNAVAILABLE')).toBeUndefined();
  });

  it('send a streamed body (no content-length) again from the copy kept as it went up', async () => {
    const up = await grpcUpstream([{ trailersOnly: 14 }, 'ok'], protocol);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY, up.cluster)));
    const body = frame('streamed message');
    const res = await call(t.port, '/g.S/M', { body, chunked: true });
    expect(res.trailers['grpc-status']).toBe('0');
    expect(up.seen).toHaveLength(2);
    expect(up.seen[0]!.headers['content-length']).toBeUndefined();
    for (const s of up.seen) expect(s.body.equals(body)).toBe(true);
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ attempts: 2, bytesIn: body.length });
  });

  it('do not retry a streamed body larger than bufferLimit: the answer goes to the client', async () => {
    const up = await grpcUpstream([{ trailersOnly: 14 }, 'ok'], protocol);
    const t = cleanup.add(
      await startTandem(simpleConfig([up.port], 'retries: { attempts: 2, retryOn: [unavailable], bufferLimit: 8B }', up.cluster)),
    );
    const res = await call(t.port, '/g.S/M', { body: frame('longer than eight bytes'), chunked: true });
    expect(res.headers['grpc-status']).toBe('14');
    expect(res.headers['x-tandem-error']).toBeUndefined();
    expect(up.seen).toHaveLength(1);
  });

  it('pass the last answer through once the tries run out, flag URX', async () => {
    const up = await grpcUpstream([{ trailersOnly: 14 }], protocol);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY, up.cluster)));
    const res = await call(t.port, '/g.S/M');
    expect(res.headers['grpc-status']).toBe('14');
    expect(res.headers['grpc-message']).toBe('from the app');
    expect(res.headers['x-try']).toBe('3');
    expect(res.headers['x-tandem-error']).toBeUndefined();
    const [line] = await waitForAccessLog(t);
    expect(line).toMatchObject({ grpcStatus: 14, attempts: 3, flags: ['URX'] });
    expect(await grpcRequests(t.adminUrl, 'all', 'UNAVAILABLE')).toBe(1);
  });

  it('match neither another status, nor a status in trailers, nor a request that is not gRPC', async () => {
    const up = await grpcUpstream([{ trailersOnly: 13 }, { trailers: 14 }, { trailersOnly: 14 }, 'ok'], protocol);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], RETRY, up.cluster)));
    expect((await call(t.port, '/g.S/M')).headers['grpc-status']).toBe('13');
    expect((await call(t.port, '/g.S/M')).trailers['grpc-status']).toBe('14');
    expect((await call(t.port, '/g.S/M', { contentType: 'application/octet-stream' })).headers['grpc-status']).toBe('14');
    expect(up.seen).toHaveLength(3);
    expect(await metricValue(t.adminUrl, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(0);
  });
});

describe.each(UPSTREAMS)('gRPC failure statuses and the cluster (%s upstream)', (protocol) => {
  it('eject an endpoint whose answers fail (in trailers as in the head), not one answering NOT_FOUND', async () => {
    const failing = await grpcUpstream([{ trailers: 14 }, { trailersOnly: 13 }], protocol);
    const notFound = await grpcUpstream([{ trailersOnly: 5 }], protocol);
    const t = cleanup.add(
      await startTandem(
        simpleConfig([failing.port, notFound.port], '', `${failing.cluster}\noutlierDetection: { consecutive5xx: 2, baseEjectionTime: 30s, maxEjectionPercent: 50 }`),
      ),
    );
    for (let i = 0; i < 4; i++) await call(t.port, '/g.S/M');
    expect(failing.seen).toHaveLength(2);
    expect(notFound.seen).toHaveLength(2);
    expect(await metricValue(t.adminUrl, 'tandem_outlier_ejections_total', { cluster: 'app' })).toBe(1);
    for (let i = 0; i < 3; i++) expect((await call(t.port, '/g.S/M')).headers['grpc-status']).toBe('5');
    expect(failing.seen).toHaveLength(2);
    const clusters = (await (await fetch(`${t.adminUrl}/clusters`)).json()) as { endpoints: { port: number; ejected: boolean }[] }[];
    expect(clusters[0]!.endpoints.map((e) => [e.port, e.ejected])).toEqual([
      [failing.port, true],
      [notFound.port, false],
    ]);
  });

  /** Four calls answered by `replies` through a cluster whose breaker opens over 50% failures of 4; then the fifth call. */
  async function afterFourCalls(replies: Reply[]): Promise<{ open: number | undefined; fifth: GrpcAnswer; seen: number }> {
    const up = await grpcUpstream([...replies, 'ok'], protocol);
    const t = cleanup.add(
      await startTandem(simpleConfig([up.port], '', `${up.cluster}\ncircuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 4, window: 10s, resetTimeout: 30s }`)),
    );
    for (let i = 0; i < 4; i++) await call(t.port, '/g.S/M');
    const open = await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' });
    return { open, fifth: await call(t.port, '/g.S/M'), seen: up.seen.length };
  }

  it('open the error-rate breaker; the open breaker answers a gRPC request UNAVAILABLE circuit_open', async () => {
    const { open, fifth, seen } = await afterFourCalls([{ trailers: 2 }, { trailersOnly: 4 }, { trailers: 15 }, { trailersOnly: 14 }]);
    expect(open).toBe(1);
    expectTrailersOnly(fifth, 14, 'circuit_open');
    expect(seen).toBe(4);
  });

  it("statuses that are the caller's business keep the breaker closed", async () => {
    const { open, fifth, seen } = await afterFourCalls([{ trailersOnly: 3 }, { trailers: 5 }, { trailersOnly: 1 }, { trailers: 16 }]);
    expect(open).toBe(0);
    expect(fifth.trailers['grpc-status']).toBe('0');
    expect(seen).toBe(5);
  });
});

describe('over h2c', () => {
  const GRPC_HEADERS = { 'content-type': 'application/grpc', te: 'trailers' };

  function h2Call(port: number, headers: Record<string, string> = {}, body = frame('hello')): Promise<H2Answer> {
    return h2Once(`http://127.0.0.1:${port}`, { method: 'POST', path: '/g.S/M', headers: { ...GRPC_HEADERS, ...headers }, body });
  }

  /** A trailers-only answer on HTTP/2: one HEADERS frame that ends the stream, as gRPC clients need it. */
  function expectH2TrailersOnly(res: H2Answer, grpcStatus: number): void {
    expect(res.status).toBe(200);
    expect(res.headersOnly).toBe(true);
    expect(res.headers['content-type']).toBe('application/grpc');
    expect(res.headers['grpc-status']).toBe(String(grpcStatus));
    expect(res.body.length).toBe(0);
    expect(res.trailers).toBeNull();
    expect(res.rstCode).toBe(0);
  }

  it("tandem's own errors are one HEADERS frame ending the stream, logged HTTP/2 with their grpcStatus", async () => {
    const t = cleanup.add(await startTandem(simpleConfig([await deadPort()]).replace('match: { prefix: / }', 'match: { prefix: /g.S/ }')));
    const unavailable = await h2Call(t.port);
    expectH2TrailersOnly(unavailable, 14);
    expect(unavailable.headers['x-tandem-error']).toBe('upstream_connect_failure');
    expect(unavailable.headers['grpc-message']).toBe('could not connect to the upstream');
    const unimplemented = await h2Once(`http://127.0.0.1:${t.port}`, { method: 'POST', path: '/other/M', headers: GRPC_HEADERS, body: frame('x') });
    expectH2TrailersOnly(unimplemented, 12);
    const lines = await waitForAccessLog(t, 2);
    expect(lines.map((l) => [l.protocol, l.status, l.grpcStatus])).toEqual([
      ['HTTP/2', 200, 14],
      ['HTTP/2', 200, 12],
    ]);
  });

  it.each(UPSTREAMS)("an upstream's trailers-only answer stays trailers-only; a full answer keeps its body and trailers (%s upstream)", async (protocol) => {
    const up = await grpcUpstream([{ trailersOnly: 7 }, 'ok'], protocol);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], '', up.cluster)));
    const session = h2Connect(`http://127.0.0.1:${t.port}`);
    try {
      const denied = await h2Request(session, { method: 'POST', path: '/g.S/M', headers: GRPC_HEADERS, body: frame('a') });
      expectH2TrailersOnly(denied, 7);
      expect(denied.headers['grpc-message']).toBe('from the app');
      expect(denied.headers['x-tandem-error']).toBeUndefined();
      const ok = await h2Request(session, { method: 'POST', path: '/g.S/M', headers: GRPC_HEADERS, body: frame('b') });
      expect(ok.headersOnly).toBe(false);
      expect(ok.body.equals(frame('reply 2'))).toBe(true);
      expect(ok.trailers).toMatchObject({ 'grpc-status': '0' });
    } finally {
      session.close();
    }
    expect(await grpcRequests(t.adminUrl, 'all', 'PERMISSION_DENIED')).toBe(1);
    expect(await grpcRequests(t.adminUrl, 'all', 'OK')).toBe(1);
  });

  it('grpc-timeout bounds the call and goes upstream as the time left', async () => {
    const up = await grpcUpstream([{ delayMs: 3000, then: 'ok' }]);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], 'maxGrpcTimeout: 0')));
    const started = performance.now();
    const res = await h2Call(t.port, { 'grpc-timeout': '150000u' });
    expectH2TrailersOnly(res, 4);
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    expect(up.seen[0]!.headers['grpc-timeout']).toBe('150000u');
  });

  it('a gRPC retry sends the streamed body of an HTTP/2 client (it has no content-length) again', async () => {
    const up = await grpcUpstream([{ trailersOnly: 14 }, 'ok']);
    const t = cleanup.add(await startTandem(simpleConfig([up.port], 'retries: { attempts: 1, retryOn: [unavailable], backoff: { base: 1ms, max: 1ms } }')));
    const res = await h2Call(t.port, {}, frame('once more'));
    expect(res.trailers).toMatchObject({ 'grpc-status': '0' });
    expect(up.seen.map((s) => s.body.toString())).toEqual([frame('once more').toString(), frame('once more').toString()]);
  });

  it('a call the client cancels (RST_STREAM) counts as CANCELLED, logged 499 without a grpcStatus', async () => {
    const up = await grpcUpstream([{ delayMs: 3000, then: 'ok' }]);
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const session = h2Connect(`http://127.0.0.1:${t.port}`);
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/g.S/M', ...GRPC_HEADERS });
      stream.on('error', () => {});
      stream.end(frame('x'));
      await new Promise((resolve) => setTimeout(resolve, 100));
      stream.close(http2.constants.NGHTTP2_CANCEL);
      const [line] = await waitForAccessLog(t);
      expect(line).toMatchObject({ status: 499, grpcStatus: null, flags: ['DC'], protocol: 'HTTP/2' });
      expect(await grpcRequests(t.adminUrl, 'all', 'CANCELLED')).toBe(1);
    } finally {
      session.close();
    }
  });

  it('a grpc-js client reads the status and message of tandem\'s errors, and x-tandem-error in their metadata', async () => {
    const t = cleanup.add(await startTandem(simpleConfig([await deadPort()])));
    const client = new grpc.Client(`127.0.0.1:${t.port}`, grpc.credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
        client.makeUnaryRequest(
          '/helloworld.Greeter/SayHello',
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from('hi'),
          (e) => (e === null ? reject(new Error('the call succeeded')) : resolve(e)),
        );
      });
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
      expect(err.details).toBe('could not connect to the upstream');
      expect(err.metadata.get('x-tandem-error')).toEqual(['upstream_connect_failure']);
    } finally {
      client.close();
    }
  });

  it("a client's request timeout answers UNAVAILABLE but counts no failure against the upstream's breaker", async () => {
    const up = cleanup.add(await startUpstream());
    const t = cleanup.add(
      await startTandem(
        simpleConfig([up.port], '', 'circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 1 }', 'limits: { requestTimeout: 300ms }'),
      ),
    );
    const session = h2Connect(`http://127.0.0.1:${t.port}`);
    try {
      // a body that never ends: the client's fault, answered as gRPC UNAVAILABLE
      const stalled = session.request({ ':method': 'POST', ':path': '/g.S/M', 'content-type': 'application/grpc', te: 'trailers' });
      stalled.on('error', () => undefined);
      stalled.write(frame('half'));
      const head = await new Promise<Record<string, unknown>>((resolve) => stalled.once('response', resolve));
      expect(head['grpc-status']).toBe('14');
      expect(head['x-tandem-error']).toBe('request_timeout');
      const next = await h2Request(session, { method: 'POST', path: '/g.S/M', headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: frame('whole') });
      expect(next.headers['x-tandem-error']).toBeUndefined();
      expect(next.status).toBe(200);
    } finally {
      session.close();
    }
    expect(await metricValue(t.adminUrl, 'tandem_circuit_breaker_open', { cluster: 'app' })).toBe(0);
  });
});
