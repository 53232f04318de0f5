// Loopback helpers: a free port, and waiting until a URL answers 200
// (over HTTP/1.1, or over h2c for the HTTP/2 peers).
import net from 'node:net';
import http from 'node:http';
import http2 from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function status(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/**
 * One request over h2c (prior knowledge) on a connection of its own: the
 * answer's status and its grpc-status (from the headers or the trailers), 0
 * and undefined when nothing came.
 */
function h2Answer(origin, headers, body) {
  return new Promise((resolve) => {
    const answer = { status: 0, grpcStatus: undefined };
    const session = http2.connect(origin);
    const done = () => {
      session.destroy();
      resolve(answer);
    };
    session.on('error', done);
    const req = session.request(headers, { endStream: !body });
    req.setTimeout(1000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.on('response', (h) => {
      answer.status = h[':status'];
      answer.grpcStatus = h['grpc-status'];
    });
    req.on('trailers', (t) => { answer.grpcStatus = t['grpc-status'] ?? answer.grpcStatus; });
    req.on('error', done);
    req.on('close', done);
    req.resume();
    if (body) req.end(body);
  });
}

async function waitUntil(ready, what, tracked, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (tracked?.exited) throw new Error(`exited (${tracked.exitCode}) before ${what} answered: ${tracked.stderr.slice(-1500)}`);
    if (await ready()) return;
    await sleep(100);
  }
  throw new Error(`${what} did not answer 200 within ${timeoutMs} ms`);
}

/** Polls `url` until it answers 200; fails early if `tracked` exits. */
export function waitFor200(url, tracked, timeoutMs = 15_000) {
  return waitUntil(async () => (await status(url)) === 200, url, tracked, timeoutMs);
}

/**
 * Polls `origin` over h2c with `headers` (pseudo-headers included) and
 * `body` until it answers 200, and for a gRPC call grpc-status 0; fails
 * early if `tracked` exits.
 */
export function waitForH2(origin, { headers, body }, tracked, timeoutMs = 15_000) {
  const ready = async () => {
    const { status: code, grpcStatus } = await h2Answer(origin, headers, body);
    return code === 200 && (grpcStatus === undefined || grpcStatus === '0');
  };
  return waitUntil(ready, `${origin}${headers[':path']} over h2c`, tracked, timeoutMs);
}
