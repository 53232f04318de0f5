// Backpressure through tandem over HTTP/2 (docs/grpc.md#flow-control): a
// 1 GiB answer to a client that stops reading, then reads slowly, and a
// 1 GiB gRPC-style upload to an upstream that does the same. tandem runs as
// a child process so that its resident memory (/proc/PID/status VmRSS) is
// its own; the test reads for a few seconds, not the whole GiB, and checks
// that the bytes in flight between the two ends, and tandem's memory, stay
// within what flow-control windows and socket buffers hold.

import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2, { type ClientHttp2Stream, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { h2Connect } from './support/http2.js';
import { listenerYaml, spawnTandem, useCleanup, writeTempFile } from './support/harness.js';

const cleanup = useCleanup();
/** what a describe's beforeAll started, closed after its last test */
const closeAll: (() => Promise<unknown> | void)[] = [];

const GiB = 1024 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'x');
/** what may sit between the two ends: HTTP/2 windows, tandem's stream buffers, loopback socket buffers both sides */
const IN_FLIGHT_BOUND = 48 * 1024 * 1024;
/** tandem's growth over its resident size before the transfer */
const RSS_GROWTH_BOUND = 64 * 1024 * 1024;
const PAUSED_MS = 1500;
const SLOW_MS = 1500;
/** the slow side's rate once it reads again, far below what loopback carries */
const SLOW_BYTES_PER_S = 8 * 1024 * 1024;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function vmRss(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]!;
  return Number(kb) * 1024;
}

/** Writes up to `total` bytes as fast as `out` takes them, waiting on 'drain'; `sent` counts what it accepted. */
function pump(out: Writable, total: number, counter: { sent: number }): void {
  const next = (): void => {
    while (counter.sent < total && !out.destroyed) {
      counter.sent += CHUNK.length;
      if (!out.write(CHUNK)) return void out.once('drain', next);
    }
    if (!out.destroyed) out.end();
  };
  next();
}

/**
 * Reads nothing for PAUSED_MS, then SLOW_BYTES_PER_S for SLOW_MS, sampling
 * tandem's RSS every 100 ms. Returns the largest sample.
 */
async function readSlowly(input: Readable, counter: { received: number }, pid: number): Promise<number> {
  let allowance = 0;
  input.on('data', (c: Buffer) => {
    counter.received += c.length;
    if (counter.received >= allowance) input.pause();
  });
  input.pause();
  let peak = 0;
  for (let ms = 0; ms < PAUSED_MS + SLOW_MS; ms += 100) {
    if (ms >= PAUSED_MS) {
      allowance = counter.received + SLOW_BYTES_PER_S / 10;
      input.resume();
    }
    await sleep(100);
    peak = Math.max(peak, vmRss(pid));
  }
  return peak;
}

interface Scene {
  origin: string;
  pid: number;
}

/** tandem in a child process, routing everything to `upstreamPort` over `protocol`; gRPC retries named so a streamed body is kept for them. */
async function tandemTo(upstreamPort: number, protocol: 'http1' | 'h2c'): Promise<Scene> {
  const file = writeTempFile(
    listenerYaml(
      '{ format: off }',
      `      - name: all
        match: { prefix: / }
        cluster: app
        timeout: 0s
        retries: { retryOn: [unavailable] }`,
      `  - name: app
    protocol: ${protocol}
    endpoints: [127.0.0.1:${upstreamPort}]`,
    ),
  );
  const p = spawnTandem(['--config', file]);
  closeAll.unshift(() => p.kill());
  const { listeners } = await p.ready(15_000);
  const origin = `http://127.0.0.1:${listeners.inbound}`;
  const warm = h2Connect(origin);
  await new Promise<void>((resolve) => warm.request({ ':path': '/warm' }).on('close', resolve).resume().end());
  warm.close();
  return { origin, pid: p.child.pid! };
}

/** An upstream of `protocol` on port 0: `onRequest` gets each request's body stream and answer stream. */
async function upstream(protocol: 'http1' | 'h2c', onRequest: (path: string, body: Readable, answer: Writable & { closed: boolean }, respond: () => void) => void): Promise<number> {
  if (protocol === 'http1') {
    const server = http.createServer((req, res) => onRequest(req.url!, req, res, () => res.writeHead(200, { 'content-type': 'application/grpc' })));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closeAll.push(() => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return (server.address() as AddressInfo).port;
  }
  const server = http2.createServer();
  const sessions = new Set<http2.Http2Session>();
  server.on('session', (s) => sessions.add(s.on('close', () => sessions.delete(s)).on('error', () => undefined)));
  server.on('stream', (stream: ServerHttp2Stream, headers) => {
    stream.on('error', () => undefined);
    onRequest(headers[':path']!, stream, stream, () => stream.respond({ ':status': 200, 'content-type': 'application/grpc' }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closeAll.push(() => {
    for (const s of sessions) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

describe.each(['http1', 'h2c'] as const)('backpressure through tandem, %s upstream', (protocol) => {
  const counter = { sent: 0, received: 0 };
  let upstreamClosed = false;
  let uploadPeak: Promise<number>;
  let scene: Scene;

  beforeAll(async () => {
    const port = await upstream(protocol, (path, body, answer, respond) => {
      if (path === '/up') {
        uploadPeak = readSlowly(body, counter, scene.pid);
        return void uploadPeak.then(() => {
          respond();
          answer.end();
        });
      }
      body.resume();
      respond();
      if (path !== '/big') return void answer.end();
      answer.on('close', () => (upstreamClosed = true));
      pump(answer, GiB, counter);
    });
    scene = await tandemTo(port, protocol);
  });
  afterAll(async () => {
    for (const close of closeAll.splice(0)) await close();
  });

  beforeEach(() => {
    counter.sent = counter.received = 0;
  });

  function request(path: string): ClientHttp2Stream {
    const session = h2Connect(scene.origin);
    cleanup.add({ close: () => void session.destroy() });
    const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => undefined);
    return stream;
  }

  it('a 1 GiB answer to an HTTP/2 client that stops reading, then reads slowly: bounded bytes in flight and tandem RSS', async () => {
    const baseline = vmRss(scene.pid);
    const stream = request('/big');
    stream.end();
    const peak = await readSlowly(stream, counter, scene.pid);
    expect(counter.received).toBeGreaterThan(SLOW_BYTES_PER_S / 10);
    expect(counter.sent - counter.received).toBeLessThan(IN_FLIGHT_BOUND);
    expect(peak - baseline).toBeLessThan(RSS_GROWTH_BOUND);
    // the client leaving stops the upstream's answer
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await expect.poll(() => upstreamClosed, { timeout: 3000 }).toBe(true);
  });

  it('a 1 GiB streamed upload from an HTTP/2 client to an upstream that stops reading, then reads slowly: the same bounds', async () => {
    const baseline = vmRss(scene.pid);
    const stream = request('/up');
    stream.resume();
    pump(stream, GiB, counter);
    await expect.poll(() => uploadPeak !== undefined, { timeout: 3000 }).toBe(true);
    const peak = await uploadPeak;
    expect(counter.received).toBeGreaterThan(SLOW_BYTES_PER_S / 10);
    expect(counter.sent - counter.received).toBeLessThan(IN_FLIGHT_BOUND);
    expect(peak - baseline).toBeLessThan(RSS_GROWTH_BOUND);
    stream.close(http2.constants.NGHTTP2_CANCEL);
  });
});
