// HTTP/2 abuse (docs/security.md): the offending connection ends with
// GOAWAY, its streams go with it, and a well-behaved client of the same
// server is answered before, during and after. The abuse is sent as raw
// frames: no client library misbehaves on purpose.

import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, vi } from 'vitest';
import type { ListenerLimits } from '../src/config/types.js';
import { ABUSE_LIMITS, H2AbuseError, guardSession, http2ServerOptions, type Abuse, type AbuseLimits } from '../src/listener/h2-guard.js';
import { useFakeTime } from './support/fake-time.js';
import { useCleanup } from './support/harness.js';
import { ERROR, FRAME, RawH2Client, SETTING, frame, getRequest, headerBlock } from './support/h2-frames.js';

const cleanup = useCleanup();

const LIMITS: ListenerLimits = {
  maxHeaderBytes: 8192,
  maxBodyBytes: 0,
  maxHeaders: 20,
  headersTimeout: 10_000,
  requestTimeout: 60_000,
  idleTimeout: 60_000,
  headersWithUnderscores: 'allow',
};

interface GuardedServer {
  port: number;
  abuses: Abuse[];
  /** streams answered so far */
  answered: number;
  /** streams open on the server right now, and the most at once */
  open: number;
  mostOpen: number;
  /** answers every `/hold` stream held so far */
  release(): void;
}

// As an upstream would, the server takes a moment to answer: a stream the
// client resets within it was reset before its answer began.
const ANSWER_AFTER_MS = 50;

/**
 * A node:http2 server with tandem's options and guard. `/hold` answers when
 * released; anything else once its body ended and ANSWER_AFTER_MS passed.
 */
async function guardedServer(abuse: AbuseLimits = ABUSE_LIMITS, concurrent = 100): Promise<GuardedServer> {
  const held: http2.ServerHttp2Stream[] = [];
  const state: GuardedServer = {
    port: 0,
    abuses: [],
    answered: 0,
    open: 0,
    mostOpen: 0,
    release: () => {
      for (const s of held.splice(0)) answer(s);
    },
  };
  const answer = (stream: http2.ServerHttp2Stream): void => {
    if (stream.destroyed) return;
    stream.respond({ ':status': 200 });
    stream.end('ok');
    state.answered++;
  };
  const server = http2.createServer(http2ServerOptions(LIMITS, concurrent));
  server.on('session', (session) => guardSession(session, abuse));
  server.on('sessionError', (err) => {
    if (err instanceof H2AbuseError) state.abuses.push(err.abuse);
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => undefined);
    state.open++;
    state.mostOpen = Math.max(state.mostOpen, state.open);
    stream.once('close', () => state.open--);
    if (headers[':path'] === '/hold') held.push(stream);
    else stream.resume().once('end', () => setTimeout(() => answer(stream), ANSWER_AFTER_MS));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  cleanup.add({
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of held) s.destroy();
      }),
  });
  return state;
}

async function raw(port: number): Promise<RawH2Client> {
  const c = await RawH2Client.connect(port);
  cleanup.add({ close: () => c.close() });
  c.settingsAck();
  return c;
}

/** A well-behaved client: node's own, on its own connection. */
async function politeClient(port: number): Promise<{ get(path?: string): Promise<number> }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  cleanup.add({ close: () => void session.destroy() });
  // a polite client learns the server's limits before it sends requests
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  return {
    get: (path = '/') =>
      new Promise((resolve, reject) => {
        const req = session.request({ ':path': path });
        req.on('response', (h) => resolve(Number(h[':status'])));
        req.on('error', reject);
        req.resume();
        req.end();
      }),
  };
}

/** Opens `count` streams from `firstId` on, resetting each right away, `perWrite` pairs to a write with a turn of the event loop between. */
async function openAndReset(c: RawH2Client, firstId: number, count: number, perWrite = 10): Promise<number> {
  let id = firstId;
  for (let i = 0; i < count; i++) {
    c.request(id);
    c.rstStream(id, ERROR.CANCEL);
    id += 2;
    if (i % perWrite === perWrite - 1) await new Promise((resolve) => setImmediate(resolve));
  }
  return id;
}

describe('rapid reset', () => {
  it('ends the connection with GOAWAY ENHANCE_YOUR_CALM past 100 resets, while another client is served', async () => {
    const srv = await guardedServer();
    const polite = await politeClient(srv.port);
    expect(await polite.get()).toBe(200);
    const c = await raw(srv.port);
    const during = polite.get();
    await openAndReset(c, 1, 300);
    const goaway = await c.goaway();
    expect(goaway?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(await c.untilClosed()).toBe(true);
    expect(srv.abuses).toEqual(['rapid_reset']);
    expect(await during).toBe(200);
    expect(await polite.get()).toBe(200);
  });

  it('tolerates 100 resets: the connection goes on serving', async () => {
    const srv = await guardedServer();
    const c = await raw(srv.port);
    const next = await openAndReset(c, 1, 100);
    c.request(next);
    expect(await c.answer(next)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
    // the 101st is one too many
    c.request(next + 2);
    c.rstStream(next + 2);
    expect((await c.goaway())?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
  });

  it('counts the streams Node refused in a burst of 1000 in one write, once the next stream comes', async () => {
    const srv = await guardedServer();
    const c = await raw(srv.port);
    // Node takes in the first 100 and rejects the rest, which the server never sees
    const next = await openAndReset(c, 1, 1000, 1000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    c.request(next);
    expect(await c.goaway()).toEqual({ errorCode: ERROR.ENHANCE_YOUR_CALM, lastStreamId: next });
    expect(srv.abuses).toEqual(['rapid_reset']);
  });
});

describe('the 10 s window', () => {
  useFakeTime();

  it('forgets what is older: 60 PINGs, 10 s, 60 more are fine; 41 more within 10 s are not', async () => {
    const srv = await guardedServer();
    const c = await raw(srv.port);
    const pings = async (n: number): Promise<void> => {
      const before = c.count(FRAME.PING);
      for (let i = 0; i < n; i++) c.ping();
      await c.waitFor(() => c.count(FRAME.PING) === before + n || c.count(FRAME.GOAWAY) > 0);
    };
    await pings(60);
    vi.advanceTimersByTime(ABUSE_LIMITS.windowMs);
    await pings(60);
    expect(c.count(FRAME.GOAWAY)).toBe(0);
    vi.advanceTimersByTime(ABUSE_LIMITS.windowMs - 1);
    await pings(40);
    expect(c.count(FRAME.GOAWAY)).toBe(0);
    c.ping();
    expect((await c.goaway())?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(srv.abuses).toEqual(['ping_flood']);
  });
});

describe('floods', () => {
  const floods: Array<[string, (c: RawH2Client) => void, Abuse]> = [
    ['SETTINGS', (c) => c.settings([[SETTING.ENABLE_PUSH, 0]]), 'settings_flood'],
    ['PING on an idle connection', (c) => c.ping(), 'ping_flood'],
  ];
  it.each(floods)('%s: GOAWAY ENHANCE_YOUR_CALM past 100 frames, another client is served', async (_, send, abuse) => {
    const srv = await guardedServer();
    const polite = await politeClient(srv.port);
    const c = await raw(srv.port);
    for (let i = 0; i < 150; i++) send(c);
    expect((await c.goaway())?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(await c.untilClosed()).toBe(true);
    expect(srv.abuses).toEqual([abuse]);
    expect(await polite.get()).toBe(200);
  });

  it('PING while a stream is open is not counted: the connection goes on', async () => {
    const srv = await guardedServer();
    const c = await raw(srv.port);
    c.headers(1, headerBlock(getRequest('/upload')), { endStream: false });
    for (let i = 0; i < 150; i++) c.ping();
    await c.waitFor(() => c.count(FRAME.PING) === 150);
    c.data(1, Buffer.from('body'));
    expect(await c.answer(1)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
    expect(srv.abuses).toEqual([]);
  });

  it('PING: 5000 in one write end at the 101st, before nghttp2 would refuse to queue more answers', async () => {
    const srv = await guardedServer();
    const c = await raw(srv.port);
    c.write(Buffer.concat(Array.from({ length: 5000 }, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8)))));
    expect((await c.goaway())?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(await c.untilClosed()).toBe(true);
    expect(c.count(FRAME.PING)).toBeLessThanOrEqual(ABUSE_LIMITS.events);
    expect(srv.abuses).toEqual(['ping_flood']);
  });
});

describe('CONTINUATION flood', () => {
  /** A request whose header block goes on in `continuations` CONTINUATION frames, the last one ending it. */
  function continued(c: RawH2Client, id: number, continuations: number): void {
    c.headers(id, headerBlock(getRequest()), { endHeaders: false });
    for (let i = 1; i <= continuations; i++) c.continuation(id, headerBlock([[`x-more-${i}`, 'a']]), i === continuations);
  }

  it('a header block in 8 CONTINUATION frames is a request like any other', async () => {
    const srv = await guardedServer();
    const c = await raw(srv.port);
    continued(c, 1, 8);
    expect(await c.answer(1)).toEqual({ status: 200 });
  });

  it('a 9th CONTINUATION frame ends the connection (nghttp2, INTERNAL_ERROR); another client is served', async () => {
    const srv = await guardedServer();
    const polite = await politeClient(srv.port);
    const c = await raw(srv.port);
    continued(c, 1, 9);
    // nghttp2's own bound, with its own code: Node gives no say in it
    expect(await c.goaway()).toEqual({ errorCode: ERROR.INTERNAL_ERROR, lastStreamId: 1 });
    expect(await c.untilClosed()).toBe(true);
    expect(await polite.get()).toBe(200);
  });
});

describe('stream limits', () => {
  it('a well-behaved client with more requests than the limit is served, the limit at a time', async () => {
    const srv = await guardedServer(ABUSE_LIMITS, 10);
    const polite = await politeClient(srv.port);
    const all = Promise.all(Array.from({ length: 30 }, () => polite.get('/hold')));
    for (let round = 0; round < 100 && srv.answered < 30; round++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      srv.release();
    }
    expect(await all).toEqual(Array(30).fill(200));
    expect(srv.mostOpen).toBe(10);
    expect(srv.abuses).toEqual([]);
  });

  it('streams past the limit before the client acknowledged it are refused (REFUSED_STREAM)', async () => {
    const srv = await guardedServer(ABUSE_LIMITS, 10);
    const c = await RawH2Client.connect(srv.port);
    cleanup.add({ close: () => c.close() });
    for (let id = 1; id <= 29; id += 2) c.request(id, getRequest('/hold'));
    expect(await c.answer(21)).toEqual({ reset: ERROR.REFUSED_STREAM });
    expect(await c.answer(29)).toEqual({ reset: ERROR.REFUSED_STREAM });
    srv.release();
    expect(await c.answer(1)).toEqual({ status: 200 });
    expect(await c.answer(19)).toEqual({ status: 200 });
  });

  it('streams past the acknowledged limit are a protocol error (nghttp2 ends the connection)', async () => {
    const srv = await guardedServer(ABUSE_LIMITS, 10);
    const c = await raw(srv.port);
    await c.waitFor((f) => f.type === FRAME.SETTINGS && f.flags === 1);
    for (let id = 1; id <= 29; id += 2) c.request(id, getRequest('/hold'));
    const goaway = await c.goaway();
    expect(goaway).toEqual({ errorCode: ERROR.PROTOCOL_ERROR, lastStreamId: 19 });
  });
});

describe('header lists', () => {
  it('too large: that stream is reset, the connection goes on', async () => {
    const srv = await guardedServer();
    const c = await raw(srv.port);
    c.request(1, getRequest('/', [['x-big', 'a'.repeat(LIMITS.maxHeaderBytes)]]));
    expect(await c.answer(1)).toEqual({ reset: ERROR.ENHANCE_YOUR_CALM });
    c.request(3, getRequest('/', [['x-fits', 'a'.repeat(LIMITS.maxHeaderBytes - 500)]]));
    expect(await c.answer(3)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
  });

  it('too many fields: that stream is reset, the connection goes on', async () => {
    const srv = await guardedServer();
    const c = await raw(srv.port);
    const fields = (n: number): Array<readonly [string, string]> => Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v'] as const);
    c.request(1, getRequest('/', fields(LIMITS.maxHeaders + 1)));
    expect(await c.answer(1)).toEqual({ reset: ERROR.ENHANCE_YOUR_CALM });
    c.request(3, getRequest('/', fields(LIMITS.maxHeaders)));
    expect(await c.answer(3)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
  });
});
