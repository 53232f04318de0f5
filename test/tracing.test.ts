// Tracing (docs/observability.md#tracing): spans exported over OTLP/HTTP to
// a receiver in the test, decoded from the protobuf on the wire.

import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfigText } from '../src/config/load.js';
import { formatConfigError } from '../src/config/errors.js';
import { BATCH_DELAY_MS, BatchExporter, QUEUE_LIMIT } from '../src/tracing/exporter.js';
import { encodeTraces } from '../src/tracing/otlp.js';
import { ClientSpan, ServerSpan } from '../src/tracing/spans.js';
import {
  deadPort,
  eventually,
  metricValue,
  rawClient,
  statusOf,
  simpleConfig,
  startFromFile,
  startTandem,
  startUpstream,
  tempDir,
  waitForAccessLog,
  type RunningTandem,
  type Upstream,
} from './support/harness.js';
import { untilReal, useFakeTime } from './support/fake-time.js';
import { decodeExportRequest, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp.js';

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function receiver(): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver();
  cleanups.push(() => r.close());
  return r;
}

async function upstream(handler?: Parameters<typeof startUpstream>[0]): Promise<Upstream> {
  const u = await startUpstream(handler);
  cleanups.push(() => u.close());
  return u;
}

const tracing = (endpoint: string, extra = ''): string =>
  `tracing: { otlp: { endpoint: "${endpoint}", headers: { x-api-key: secret }, timeout: 2s }${extra} }\ndrain: { timeout: 5s }\n`;

async function tandemWith(yaml: string): Promise<RunningTandem> {
  const t = await startTandem(yaml);
  cleanups.push(() => t.close());
  return t;
}

/** Drains tandem (which flushes the span queue) and returns what the receiver got. */
async function drained(t: RunningTandem, r: OtlpReceiver): Promise<ReceivedSpan[]> {
  await t.tandem.drain();
  return r.spans;
}

const INCOMING_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const INCOMING_PARENT = '00f067aa0ba902b7';

/** A BatchExporter to `r` on its own (no tandem), counting what it exports and drops, and a span to queue on it. */
function exporterTo(r: OtlpReceiver): { exporter: BatchExporter; counts: { exported: number; dropped: number }; span: ServerSpan } {
  const counts = { exported: 0, dropped: 0 };
  const exporter = new BatchExporter({ endpoint: r.url, headers: {}, timeout: 2000 }, 'tandem', {
    exported: (n) => void (counts.exported += n),
    dropped: (n) => void (counts.dropped += n),
  });
  cleanups.push(() => exporter.close());
  const span = new ServerSpan(INCOMING_TRACE, INCOMING_PARENT, null, 1, 2, 'GET', '/', 'http', 'h', '127.0.0.1', undefined, '1.1', 200, null, 'r', 'c', [], 'id', false, null);
  return { exporter, counts, span };
}

describe('spans', () => {
  it('nests a SERVER span under the caller and a CLIENT span under it, whose id the upstream receives', async () => {
    const r = await receiver();
    const up = await upstream();
    const t = await tandemWith(tracing(r.url) + simpleConfig([up.port]));
    const res = await fetch(`${t.url}/orders/42?expand=items`, {
      headers: { traceparent: `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`, tracestate: 'vendor=abc,other=x', 'user-agent': 'probe/1' },
    });
    expect(res.status).toBe(200);
    await res.text();
    const [line] = await waitForAccessLog(t);
    const spans = await drained(t, r);

    expect(spans).toHaveLength(2);
    const server = spans.find((s) => s.kind === 2)!;
    const client = spans.find((s) => s.kind === 3)!;
    expect(server.traceId).toBe(INCOMING_TRACE);
    expect(server.parentSpanId).toBe(INCOMING_PARENT);
    expect(server.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(server.name).toBe('GET all');
    expect(server.serviceName).toBe('tandem');
    expect(server.statusCode).toBe(0);
    expect(server.attributes).toEqual({
      'http.request.method': 'GET',
      'url.path': '/orders/42',
      'url.scheme': 'http',
      'server.address': '127.0.0.1',
      'server.port': BigInt(t.port),
      'client.address': '127.0.0.1',
      'user_agent.original': 'probe/1',
      'network.protocol.version': '1.1',
      'http.response.status_code': 200n,
      'tandem.route': 'all',
      'tandem.cluster': 'app',
      'tandem.response_flags': [],
      'tandem.request_id': line!.requestId,
    });
    expect(server.endNanos).toBeGreaterThanOrEqual(server.startNanos);

    expect(client.traceId).toBe(INCOMING_TRACE);
    expect(client.parentSpanId).toBe(server.spanId);
    expect(client.spanId).not.toBe(server.spanId);
    expect(client.name).toBe('GET');
    expect(client.attributes).toEqual({
      'http.request.method': 'GET',
      'server.address': '127.0.0.1',
      'server.port': BigInt(up.port),
      'http.request.resend_count': 0n,
      'http.response.status_code': 200n,
    });
    expect(client.startNanos).toBeGreaterThanOrEqual(server.startNanos);
    expect(client.endNanos).toBeLessThanOrEqual(server.endNanos);

    expect(up.seen[0]!.headers.traceparent).toBe(`00-${INCOMING_TRACE}-${client.spanId}-01`);
    expect(up.seen[0]!.headers.tracestate).toBe('vendor=abc,other=x');
    expect(line!.spanId).toBe(server.spanId);
    expect(line!.traceId).toBe(INCOMING_TRACE);
    // the collector got the configured headers, protobuf
    expect(r.requests[0]!.headers['x-api-key']).toBe('secret');
    expect(r.requests[0]!.headers['content-type']).toBe('application/x-protobuf');
    expect(await t.tandem.metrics.render()).toMatch(/^tandem_tracing_spans_exported_total 2$/m);
  });

  it('gives each try its CLIENT span and the upstream each try\'s own traceparent', async () => {
    const r = await receiver();
    let n = 0;
    const up = await upstream((_req, res) => {
      res.writeHead(n++ === 0 ? 503 : 200);
      res.end();
    });
    const t = await tandemWith(tracing(r.url) + simpleConfig([up.port], 'retries: { attempts: 2, retryOn: [5xx], backoff: { base: 10ms, max: 20ms } }'));
    const res = await fetch(`${t.url}/x`);
    expect(res.status).toBe(200);
    await res.text();
    await waitForAccessLog(t);
    const spans = await drained(t, r);
    const server = spans.find((s) => s.kind === 2)!;
    const clients = spans.filter((s) => s.kind === 3).sort((a, b) => Number(a.attributes['http.request.resend_count']) - Number(b.attributes['http.request.resend_count']));
    expect(clients).toHaveLength(2);
    expect(clients.map((c) => c.attributes['http.request.resend_count'])).toEqual([0n, 1n]);
    expect(clients.map((c) => c.attributes['http.response.status_code'])).toEqual([503n, 200n]);
    expect(clients[0]!.attributes['error.type']).toBe('503');
    expect(clients[0]!.statusCode).toBe(2);
    expect(clients[1]!.attributes['error.type']).toBeUndefined();
    for (const c of clients) expect(c.parentSpanId).toBe(server.spanId);
    expect(up.seen.map((s) => s.headers.traceparent)).toEqual(clients.map((c) => `00-${server.traceId}-${c.spanId}-01`));
    // a trace tandem started: the SERVER span is its root
    expect(server.parentSpanId).toBe('');
  });

  it('marks a 5xx of tandem\'s own as an error, with its code as error.type on both spans', async () => {
    const r = await receiver();
    const t = await tandemWith(tracing(r.url) + simpleConfig([await deadPort()]));
    const res = await fetch(`${t.url}/x`);
    expect(res.status).toBe(502);
    await res.text();
    await waitForAccessLog(t);
    const spans = await drained(t, r);
    const server = spans.find((s) => s.kind === 2)!;
    const clients = spans.filter((s) => s.kind === 3);
    expect(server.statusCode).toBe(2);
    expect(server.attributes['error.type']).toBe('upstream_connect_failure');
    expect(server.attributes['http.response.status_code']).toBe(502n);
    // connect failures are retried by default: every try failed the same way
    expect(server.attributes['tandem.response_flags']).toEqual(['URX', 'UF']);
    expect(clients.length).toBeGreaterThan(1);
    for (const client of clients) {
      expect(client.attributes['error.type']).toBe('upstream_connect_failure');
      expect(client.attributes['http.response.status_code']).toBeUndefined();
      expect(client.statusCode).toBe(2);
      expect(client.parentSpanId).toBe(server.spanId);
    }
  });

  it('names a request without a route by its method alone; a 404 is no error', async () => {
    const r = await receiver();
    const up = await upstream();
    const t = await tandemWith(tracing(r.url) + simpleConfig([up.port]).replace('prefix: /', 'prefix: /only'));
    const res = await fetch(`${t.url}/elsewhere`, { method: 'DELETE' });
    expect(res.status).toBe(404);
    await res.text();
    await waitForAccessLog(t);
    const spans = await drained(t, r);
    expect(spans).toHaveLength(1);
    expect(spans[0]!.name).toBe('DELETE');
    expect(spans[0]!.statusCode).toBe(0);
    expect(spans[0]!.attributes['error.type']).toBe('no_route');
    expect(spans[0]!.attributes['tandem.route']).toBeUndefined();
  });

  it("names a request refused before its head was parsed HTTP, its method attribute _OTHER", async () => {
    const r = await receiver();
    const up = await upstream();
    const t = await tandemWith(tracing(r.url) + simpleConfig([up.port]));
    const c = await rawClient(t.port);
    c.write('NOT HTTP AT ALL\r\n\r\n');
    expect(statusOf(await c.waitFor((text) => text.includes('\r\n\r\n')))).toBe(400);
    c.destroy();
    await waitForAccessLog(t);
    const spans = await drained(t, r);
    expect(spans).toHaveLength(1);
    expect(spans[0]!.name).toBe('HTTP');
    expect(spans[0]!.attributes['http.request.method']).toBe('_OTHER');
    expect(spans[0]!.attributes['tandem.response_flags']).toEqual(['DPE']);
  });
});

describe('gRPC calls', () => {
  it('carry rpc.system, rpc.service, rpc.method and rpc.grpc.status_code on SERVER and CLIENT spans; other requests none', () => {
    const path = '/helloworld.Greeter/SayHello';
    const spans = [
      new ServerSpan(INCOMING_TRACE, 'b'.repeat(16), null, 1, 3, 'POST', path, 'http', 'h', '127.0.0.1', undefined, '2', 200, null, 'r', 'c', [], 'id', true, 14),
      new ClientSpan(INCOMING_TRACE, 'c'.repeat(16), 'b'.repeat(16), 1, 2, 'POST', '10.0.0.1', 50051, 0, 200, null, path, 14),
      new ServerSpan(INCOMING_TRACE, 'd'.repeat(16), null, 1, 3, 'GET', '/plain', 'http', 'h', '127.0.0.1', undefined, '1.1', 200, null, 'r', 'c', [], 'id2', false, null),
    ];
    const [server, client, plain] = decodeExportRequest(encodeTraces(spans, 'tandem'));
    for (const span of [server!, client!]) {
      expect(span.attributes['rpc.system']).toBe('grpc');
      expect(span.attributes['rpc.service']).toBe('helloworld.Greeter');
      expect(span.attributes['rpc.method']).toBe('SayHello');
      expect(span.attributes['rpc.grpc.status_code']).toBe(14n);
      // UNAVAILABLE in a 200 is an error all the same
      expect(span.statusCode).toBe(2);
    }
    expect(plain!.attributes['rpc.system']).toBeUndefined();
    expect(plain!.statusCode).toBe(0);
  });

  it("a gRPC call through tandem: its spans carry the status the upstream's trailers-only answer gave", async () => {
    const r = await receiver();
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not found' });
      res.end();
    });
    const t = await tandemWith(tracing(r.url) + simpleConfig([up.port]));
    const res = await fetch(`${t.url}/shop.Orders/Get`, { method: 'POST', headers: { 'content-type': 'application/grpc', te: 'trailers' }, body: '' });
    expect(res.headers.get('grpc-status')).toBe('5');
    await waitForAccessLog(t);
    const spans = await drained(t, r);
    for (const kind of [2, 3]) {
      const span = spans.find((s) => s.kind === kind)!;
      expect([span.attributes['rpc.service'], span.attributes['rpc.method'], span.attributes['rpc.grpc.status_code']]).toEqual(['shop.Orders', 'Get', 5n]);
      // NOT_FOUND is the caller's business, not a failure of the server
      expect(span.statusCode).toBe(0);
    }
  });
});

describe('encoding', () => {
  // values that repeat from span to span are copied from their first encoding (spans.ts): each must still read back as its own
  it('writes repeated, alternating and missing attribute values as each span has them', () => {
    const hosts = ['a.example:8080', 'a.example:8080', 'a.example:8080', '[::1]:81', undefined, 'a.example:8080'];
    const agents = ['probe/1', 'probe/1', undefined, 'probe/1', 'probe/2', 'probe/2'];
    const flags = [[], [], ['UF', 'URX'], ['UF', 'URX'], [], ['UF']];
    const spans = hosts.flatMap((host, i) => [
      new ClientSpan(INCOMING_TRACE, `${i}`.padStart(16, 'c'), `${i}`.padStart(16, 'b'), 1, 2, 'GET', i % 2 ? '10.0.0.2' : '10.0.0.1', 8080 + (i % 2), i, i === 3 ? 0 : 200, i === 3 ? 'upstream_reset' : null, null, null),
      new ServerSpan(INCOMING_TRACE, `${i}`.padStart(16, 'b'), null, 1, 3, 'GET', `/p/${i % 2}?q=${i}`, 'http', host, '127.0.0.1', agents[i], '1.1', i === 3 ? 502 : 200, i === 3 ? 'upstream_reset' : null, i === 4 ? null : 'r', i === 4 ? null : 'c', flags[i]!, `id-${i}`, false, null),
    ]);
    const decoded = decodeExportRequest(encodeTraces(spans, 'tandem'));
    expect(decoded).toHaveLength(12);
    hosts.forEach((host, i) => {
      const client = decoded[2 * i]!;
      const server = decoded[2 * i + 1]!;
      expect(client.attributes).toEqual({
        'http.request.method': 'GET',
        'server.address': i % 2 ? '10.0.0.2' : '10.0.0.1',
        'server.port': BigInt(8080 + (i % 2)),
        'http.request.resend_count': BigInt(i),
        ...(i === 3 ? { 'error.type': 'upstream_reset' } : { 'http.response.status_code': 200n }),
      });
      expect(client.statusCode).toBe(i === 3 ? 2 : 0);
      expect(server.name).toBe(i === 4 ? 'GET' : 'GET r');
      expect(server.attributes).toEqual({
        'http.request.method': 'GET',
        'url.path': `/p/${i % 2}`,
        'url.scheme': 'http',
        ...(host === undefined ? {} : host.startsWith('[') ? { 'server.address': '::1', 'server.port': 81n } : { 'server.address': 'a.example', 'server.port': 8080n }),
        'client.address': '127.0.0.1',
        ...(agents[i] === undefined ? {} : { 'user_agent.original': agents[i] }),
        'network.protocol.version': '1.1',
        'http.response.status_code': i === 3 ? 502n : 200n,
        ...(i === 3 ? { 'error.type': 'upstream_reset' } : {}),
        ...(i === 4 ? {} : { 'tandem.route': 'r', 'tandem.cluster': 'c' }),
        'tandem.response_flags': flags[i],
        'tandem.request_id': `id-${i}`,
      });
    });
  });
});

describe('tunnels', () => {
  it('records a WebSocket tunnel as a SERVER span that ends when the tunnel closes', async () => {
    const r = await receiver();
    let seenTraceparent: string | undefined;
    const server = http.createServer();
    server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
      seenTraceparent = req.headers.traceparent as string;
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nhello');
      socket.on('data', (d) => socket.write(d));
      socket.on('end', () => socket.end());
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }));
    const t = await tandemWith(tracing(r.url) + simpleConfig([(server.address() as AddressInfo).port]));
    const c = await rawClient(t.port);
    c.write('GET /chat HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    expect(statusOf(await c.waitFor((s) => s.endsWith('hello')))).toBe(101);
    await new Promise((resolve) => setTimeout(resolve, 300));
    c.destroy();
    const [line] = await waitForAccessLog(t);
    const spans = await drained(t, r);
    expect(spans).toHaveLength(2);
    const span = spans.find((s) => s.kind === 2)!;
    expect(span.name).toBe('GET all');
    expect(span.attributes['http.response.status_code']).toBe(101n);
    expect(span.attributes['server.address']).toBe('chat.example');
    expect(span.attributes['server.port']).toBeUndefined();
    expect(Number(span.endNanos - span.startNanos) / 1e6).toBeGreaterThanOrEqual(290);
    expect(line!.spanId).toBe(span.spanId);
    // the upgrade's try is a CLIENT span under it, and the upstream's parent
    const client = spans.find((s) => s.kind === 3)!;
    expect(client.parentSpanId).toBe(span.spanId);
    expect(client.traceId).toBe(span.traceId);
    expect(client.attributes['http.response.status_code']).toBe(101n);
    expect(client.attributes['error.type']).toBeUndefined();
    expect(seenTraceparent).toBe(`00-${span.traceId}-${client.spanId}-01`);
  });

  it("an upgrade that cannot reach its endpoint has a CLIENT span with the try's error", async () => {
    const r = await receiver();
    const t = await tandemWith(tracing(r.url) + simpleConfig([await deadPort()]));
    const c = await rawClient(t.port);
    c.write('GET /chat HTTP/1.1\r\nHost: chat.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    expect(statusOf(await c.waitFor((s) => s.includes('\r\n\r\n')))).toBe(502);
    c.destroy();
    await waitForAccessLog(t);
    const spans = await drained(t, r);
    const server = spans.find((s) => s.kind === 2)!;
    const client = spans.find((s) => s.kind === 3)!;
    expect(client.parentSpanId).toBe(server.spanId);
    expect(client.attributes['error.type']).toBe('upstream_connect_failure');
    expect(client.attributes['http.response.status_code']).toBeUndefined();
  });
});

describe('sampling', () => {
  it('at 0, a trace tandem starts goes upstream with flags 00 and records nothing', async () => {
    const r = await receiver();
    const up = await upstream();
    const t = await tandemWith(tracing(r.url, ', sampling: 0') + simpleConfig([up.port]));
    for (let i = 0; i < 5; i++) await (await fetch(`${t.url}/x`)).text();
    const lines = await waitForAccessLog(t, 5);
    expect(await drained(t, r)).toEqual([]);
    expect(up.seen).toHaveLength(5);
    for (const s of up.seen) expect(s.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    for (const l of lines) expect(l.spanId).toBeNull();
  });

  it('an incoming unsampled traceparent is forwarded unchanged and decides against sampling', async () => {
    const r = await receiver();
    const up = await upstream();
    const t = await tandemWith(tracing(r.url) + simpleConfig([up.port]));
    const incoming = `00-${INCOMING_TRACE}-${INCOMING_PARENT}-00`;
    await (await fetch(`${t.url}/x`, { headers: { traceparent: incoming, tracestate: 'a=1' } })).text();
    const [line] = await waitForAccessLog(t);
    expect(await drained(t, r)).toEqual([]);
    expect(up.seen[0]!.headers.traceparent).toBe(incoming);
    expect(up.seen[0]!.headers.tracestate).toBe('a=1');
    expect(line!.spanId).toBeNull();
    expect(line!.traceId).toBe(INCOMING_TRACE);
  });

  it('at 0.5, samples about half of the traces tandem starts', async () => {
    const r = await receiver();
    const up = await upstream();
    const t = await tandemWith(tracing(r.url, ', sampling: 0.5') + simpleConfig([up.port]));
    for (let i = 0; i < 200; i++) await (await fetch(`${t.url}/x`)).text();
    const lines = await waitForAccessLog(t, 200);
    const traced = lines.filter((l) => l.spanId !== null).length;
    expect(traced).toBeGreaterThan(60);
    expect(traced).toBeLessThan(140);
    const sampledUpstream = up.seen.filter((s) => String(s.headers.traceparent).endsWith('-01')).length;
    expect(sampledUpstream).toBe(traced);
    expect((await drained(t, r)).filter((s) => s.kind === 2)).toHaveLength(traced);
  });
});

describe('without tracing', () => {
  it('forwards the traceparent as before, logs spanId null and registers no span series', async () => {
    const up = await upstream();
    const t = await tandemWith(simpleConfig([up.port]));
    const incoming = `00-${INCOMING_TRACE}-${INCOMING_PARENT}-01`;
    await (await fetch(`${t.url}/x`, { headers: { traceparent: incoming } })).text();
    const [line] = await waitForAccessLog(t);
    expect(up.seen[0]!.headers.traceparent).toBe(incoming);
    expect(line!.spanId).toBeNull();
    expect(await metricValue(t.adminUrl, 'tandem_tracing_spans_exported_total')).toBeUndefined();
  });
});

describe('export', () => {
  it('counts the series at zero from the start and shows the block in /config, header values redacted', async () => {
    const r = await receiver();
    const up = await upstream();
    const t = await tandemWith(tracing(r.url) + simpleConfig([up.port]));
    expect(await metricValue(t.adminUrl, 'tandem_tracing_spans_exported_total')).toBe(0);
    expect(await metricValue(t.adminUrl, 'tandem_tracing_spans_dropped_total')).toBe(0);
    const view = (await (await fetch(`${t.adminUrl}/config`)).json()) as { config: { tracing: unknown } };
    // the collector's header values are secrets: named, not shown
    expect(view.config.tracing).toEqual({ otlp: { endpoint: r.url, headers: { 'x-api-key': '<redacted>' }, timeout: 2000 }, serviceName: 'tandem', sampling: 1 });
  });

  it('keeps answering with a dead collector, counting the spans it drops', async () => {
    const up = await upstream();
    const t = await tandemWith(tracing(`http://127.0.0.1:${await deadPort()}/v1/traces`) + simpleConfig([up.port]));
    for (let i = 0; i < 20; i++) expect((await fetch(`${t.url}/x`)).status).toBe(200);
    await waitForAccessLog(t, 20);
    await t.tandem.drain();
    const metrics = t.tandem.metrics;
    const text = await metrics.render();
    expect(text).toMatch(/^tandem_tracing_spans_dropped_total 40$/m);
    expect(text).toMatch(/^tandem_tracing_spans_exported_total 0$/m);
  });

  it('gives up on a collector that never answers within drain.timeout, not otlp.timeout', async () => {
    // accepts connections, never answers
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      silent.close(() => resolve());
    }));
    const up = await upstream();
    const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/v1/traces`;
    const t = await tandemWith(`tracing: { otlp: { endpoint: "${endpoint}", timeout: 30s } }\ndrain: { timeout: 1s }\n` + simpleConfig([up.port]));
    expect((await fetch(`${t.url}/x`)).status).toBe(200);
    await waitForAccessLog(t);
    const started = Date.now();
    await t.tandem.drain();
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(3000);
    expect(sockets.size).toBe(1);
    // the export cut at close: its spans count as dropped
    expect(await eventually(async () => /^tandem_tracing_spans_dropped_total 2$/m.test(await t.tandem.metrics.render()))).toBe(true);
  });

  it('bounds the queue at 2048 spans, counting the overflow, and sends it in batches of 512', async () => {
    const r = await receiver();
    const { exporter, counts, span } = exporterTo(r);
    for (let i = 0; i < QUEUE_LIMIT + 100; i++) exporter.add(span);
    expect(exporter.queued).toBe(QUEUE_LIMIT);
    expect(counts.dropped).toBe(100);
    await exporter.flush(5000);
    expect(counts.exported).toBe(QUEUE_LIMIT);
    expect(r.requests.map((q) => q.spans)).toEqual([512, 512, 512, 512]);
    expect(r.spans).toHaveLength(QUEUE_LIMIT);
  });

  it('counts a batch the collector refuses as dropped and backs off before the next', async () => {
    const r = await receiver();
    r.status = 503;
    const { exporter, counts, span } = exporterTo(r);
    for (let i = 0; i < 512; i++) exporter.add(span);
    expect(await eventually(() => counts.dropped === 512, 2000)).toBe(true);
    r.status = 200;
    for (let i = 0; i < 512; i++) exporter.add(span);
    // a full batch waits out the backoff (1 s) instead of going at once
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(r.requests).toHaveLength(1);
    expect(await eventually(() => counts.exported === 512, 2000)).toBe(true);
    expect(r.requests).toHaveLength(2);
  });
});

describe('export on fake time', () => {
  useFakeTime();

  it('sends a batch 5 s after the oldest queued span, without a drain', async () => {
    const r = await receiver();
    const up = await upstream();
    const t = await tandemWith(tracing(r.url, ', serviceName: shop-sidecar') + simpleConfig([up.port]));
    await (await fetch(`${t.url}/x`)).text();
    vi.advanceTimersByTime(BATCH_DELAY_MS - 1);
    expect(await untilReal(() => r.spans.length > 0, 200)).toBe(false);
    vi.advanceTimersByTime(1);
    expect(await untilReal(() => r.spans.length === 2)).toBe(true);
    expect(r.spans[0]!.serviceName).toBe('shop-sidecar');
    expect(r.spans[0]!.scope).toBe('tandem');
  });
});

describe('reload', () => {
  it('switches tracing on, to another collector and off, each collector getting the spans recorded for it', async () => {
    const a = await receiver();
    const b = await receiver();
    const up = await upstream();
    const file = join(tempDir(), 'tandem.yaml');
    const base = `accessLog: { format: off }\n${simpleConfig([up.port])}`;
    writeFileSync(file, base);
    const tandem = await startFromFile(file, (t) => cleanups.push(() => t.close()));
    const url = `http://127.0.0.1:${tandem.listeners[0]!.port}/x`;
    const get = async (): Promise<void> => void (await (await fetch(url)).text());

    await get();
    writeFileSync(file, tracing(a.url) + base);
    expect((await tandem.reload()).ok).toBe(true);
    await get();
    await get();
    // queued for a (5 s batch delay): the switch must not lose them
    writeFileSync(file, tracing(b.url) + base);
    expect((await tandem.reload()).ok).toBe(true);
    await get();
    expect(await eventually(() => a.spans.length === 4, 3000)).toBe(true);
    // the retired exporter closes its keep-alive connection once flushed (the receiver would after 5 s)
    expect(await eventually(() => a.openConnections() === 0, 1000)).toBe(true);
    writeFileSync(file, base);
    expect((await tandem.reload()).ok).toBe(true);
    await get();
    expect(await eventually(() => b.spans.length === 2, 3000)).toBe(true);
    expect(await eventually(() => b.openConnections() === 0, 1000)).toBe(true);
    await tandem.drain();
    expect(a.spans).toHaveLength(4);
    expect(b.spans).toHaveLength(2);
    expect(up.seen).toHaveLength(5);
    expect(up.seen[0]!.headers.traceparent).toMatch(/-01$/);
    expect(up.seen[4]!.headers.traceparent).toMatch(/-01$/);
    const text = await tandem.metrics.render();
    expect(text).toMatch(/^tandem_tracing_spans_exported_total 6$/m);
  });
});

describe('configuration', () => {
  it('refuses a sampling outside 0..1 and a non-http endpoint, with file:line:col', () => {
    const bad = loadConfigText(
      `tracing:\n  otlp: { endpoint: "ftp://x/v1/traces" }\n  sampling: 1.5\nlisteners:\n  - { port: 0, routes: [{ match: { prefix: / }, directResponse: { status: 200 } }] }\n`,
      'bad.yaml',
    );
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    const messages = bad.errors.map(formatConfigError).join('\n');
    expect(messages).toMatch(/bad\.yaml:2:\d+: tracing\.otlp\.endpoint/);
    expect(messages).toMatch(/bad\.yaml:3:13: tracing\.sampling/);
  });
});
