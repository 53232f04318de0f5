// HTTP/2 abuse (docs/security.md) against a running tandem on h2c: the
// offending connection ends with GOAWAY, its streams go with it, and a
// well-behaved client on another connection is answered before, during and
// after. The abuse is sent as raw frames: no client library misbehaves on
// purpose.

import http2, { type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ABUSE_LIMITS, guardSession, type Abuse } from '../src/listener/h2-guard.js';
import { log } from '../src/observability/log.js';
import { certDir, type CertDir } from './support/certs.js';
import { useFakeTime } from './support/fake-time.js';
import { eventually, startTandem, startUpstream, useCleanup } from './support/harness.js';
import { ERROR, FLAG, FRAME, RawH2Client, SETTING, frame, getRequest, headerBlock } from './support/h2-frames.js';
import { h2Connect, h2Request } from './support/http2.js';

const cleanup = useCleanup();

const MAX_HEADER_BYTES = 8192;
const MAX_HEADERS = 20;

// The upstream takes a moment to answer, as a real one does: a stream the
// client resets within it was reset before its answer began.
const ANSWER_AFTER_MS = 50;

interface Proxied {
  port: number;
  /** requests the upstream has open right now, and the most at once */
  open: number;
  mostOpen: number;
  /** requests to /hold waiting for release() */
  held(): number;
  release(): void;
}

/**
 * tandem on h2c (or h2 with `tls`) in front of an HTTP/1.1 upstream; `/hold` waits for
 * release(), `/now` is answered at once, anything else after ANSWER_AFTER_MS.
 */
async function startProxied(maxConcurrentStreams = 100, tls?: CertDir): Promise<Proxied> {
  const held: Array<() => void> = [];
  const state: Proxied = {
    port: 0,
    open: 0,
    mostOpen: 0,
    held: () => held.length,
    release: () => {
      for (const answer of held.splice(0)) answer();
    },
  };
  const upstream = cleanup.add(
    await startUpstream((req, res) => {
      state.open++;
      state.mostOpen = Math.max(state.mostOpen, state.open);
      res.once('close', () => state.open--);
      const answer = (): void => void res.end('ok');
      if (req.url === '/hold') held.push(answer);
      else if (req.url === '/now') answer();
      else setTimeout(answer, ANSWER_AFTER_MS);
    }),
  );
  const t = cleanup.add(
    await startTandem(`
listeners:
  - name: inbound
    address: 127.0.0.1
    port: 0
    protocols: ${tls === undefined ? '[http1, h2c]' : `[http1, h2]\n    tls: { certFile: ${tls.file('server.crt')}, keyFile: ${tls.file('server.key')} }`}
    http2: { maxConcurrentStreams: ${maxConcurrentStreams} }
    limits: { maxHeaderBytes: ${MAX_HEADER_BYTES}, maxHeaders: ${MAX_HEADERS} }
    routes:
      - match: { prefix: / }
        cluster: app
clusters:
  - name: app
    endpoints: [127.0.0.1:${upstream.port}]
`),
  );
  state.port = t.port;
  return state;
}

/** The abuse tandem logs, in order: the fields of each such line, once there is one (tandem logs once the connection is gone). */
function loggedAbuse(): () => Promise<Array<{ abuse: Abuse }>> {
  const warn = vi.spyOn(log, 'warn');
  const lines = (): Array<{ abuse: Abuse }> =>
    warn.mock.calls.flatMap(([fields]) => (typeof fields === 'object' && fields !== null && 'abuse' in fields ? [fields as { abuse: Abuse }] : []));
  return async () => {
    await eventually(() => lines().length > 0);
    return lines();
  };
}

afterEach(() => {
  vi.restoreAllMocks();
});

async function raw(port: number, tls = false): Promise<RawH2Client> {
  const c = await RawH2Client.connect(port, { tls });
  cleanup.add({ close: () => c.close() });
  c.settingsAck();
  return c;
}

/** A well-behaved client, node's own, on its own connection; it learns the limits before it asks. */
async function politeClient(port: number, tls?: CertDir): Promise<{ session: ClientHttp2Session; get(path?: string): Promise<number> }> {
  const session = tls === undefined ? h2Connect(`http://127.0.0.1:${port}`) : h2Connect(`https://127.0.0.1:${port}`, { ca: tls.pem('ca.crt') });
  cleanup.add({ close: () => void session.destroy() });
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  return { session, get: async (path = '/') => (await h2Request(session, { path })).status };
}

/** Opens `count` streams from `firstId` on, resetting each right away, `perWrite` pairs to a turn of the event loop. */
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
  it('past 100 streams reset before their answer: GOAWAY ENHANCE_YOUR_CALM, while another client is served', async () => {
    const t = await startProxied();
    const abuse = loggedAbuse();
    const polite = await politeClient(t.port);
    expect(await polite.get()).toBe(200);
    const c = await raw(t.port);
    const during = polite.get();
    await openAndReset(c, 1, 300);
    expect((await c.goaway())?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(await c.untilClosed()).toBe(true);
    expect(await abuse()).toEqual([{ listener: 'inbound', client: '127.0.0.1', abuse: 'rapid_reset' }]);
    expect(await during).toBe(200);
    expect(await polite.get()).toBe(200);
  });

  it('over TLS (h2 by ALPN) as over h2c', async () => {
    const certs = certDir();
    certs.make('ca', '/CN=Test CA', { isCa: true });
    certs.make('server', '/CN=server', { ca: 'ca', san: 'IP:127.0.0.1' });
    const t = await startProxied(100, certs);
    const polite = await politeClient(t.port, certs);
    const c = await raw(t.port, true);
    await openAndReset(c, 1, 300);
    expect((await c.goaway())?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(await c.untilClosed()).toBe(true);
    expect(await polite.get()).toBe(200);
  });

  it.each([ERROR.CANCEL, ERROR.INTERNAL_ERROR])('a stream reset (code %i) in the very write that opened it is gone before tandem sees it; tandem serves on', async (code) => {
    const t = await startProxied();
    const polite = await politeClient(t.port);
    const c = await raw(t.port);
    c.write(frame(FRAME.HEADERS, FLAG.END_STREAM | FLAG.END_HEADERS, 1, headerBlock(getRequest())), frame(FRAME.RST_STREAM, 0, 1, Buffer.from([0, 0, 0, code])));
    c.request(3);
    expect(await c.answer(3)).toEqual({ status: 200 });
    expect(await polite.get()).toBe(200);
  });

  it('100 resets are tolerated, the 101st is not', async () => {
    const t = await startProxied();
    const c = await raw(t.port);
    const next = await openAndReset(c, 1, 100);
    c.request(next);
    expect(await c.answer(next)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
    c.request(next + 2);
    c.rstStream(next + 2);
    expect(await c.goaway()).toEqual({ errorCode: ERROR.ENHANCE_YOUR_CALM, lastStreamId: next + 2 });
  });

  it('a reset after the answer began does not count: 150 cancelled downloads', async () => {
    const t = await startProxied();
    const c = await raw(t.port);
    for (let id = 1; id < 300; id += 2) {
      c.request(id, getRequest('/now'));
      expect(await c.answer(id)).toEqual({ status: 200 });
      c.rstStream(id);
    }
    c.request(301);
    expect(await c.answer(301)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
  });

  it('the streams Node refused in a burst of 1000 in one write count once the next stream comes', async () => {
    const t = await startProxied();
    const abuse = loggedAbuse();
    const c = await raw(t.port);
    // Node takes in the first 100 and rejects the rest, which tandem never sees
    const next = await openAndReset(c, 1, 1000, 1000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    c.request(next);
    // at `next` when the burst came in one read; earlier when the next read showed the gap
    const goaway = await c.goaway();
    expect(goaway?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(goaway?.lastStreamId).toBeLessThanOrEqual(next);
    expect((await abuse()).map((f) => f.abuse)).toEqual(['rapid_reset']);
  });
});

describe('SETTINGS and PING floods', () => {
  const floods: Array<[string, (c: RawH2Client) => void, Abuse]> = [
    ['SETTINGS', (c) => c.settings([[SETTING.ENABLE_PUSH, 0]]), 'settings_flood'],
    ['PING on an idle connection', (c) => c.ping(), 'ping_flood'],
  ];
  it.each(floods)('%s: GOAWAY ENHANCE_YOUR_CALM past 100 frames, another client is served', async (_, send, kind) => {
    const t = await startProxied();
    const abuse = loggedAbuse();
    const polite = await politeClient(t.port);
    const c = await raw(t.port);
    for (let i = 0; i < 150; i++) send(c);
    expect((await c.goaway())?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(await c.untilClosed()).toBe(true);
    expect((await abuse()).map((f) => f.abuse)).toEqual([kind]);
    expect(await polite.get()).toBe(200);
  });

  it('PINGs while a stream is open do not count: the connection goes on', async () => {
    const t = await startProxied();
    const c = await raw(t.port);
    // in one write: the PINGs arrive before tandem has seen the stream
    c.write(frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, headerBlock(getRequest('/upload'))), ...Array.from({ length: 150 }, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8))));
    await c.waitFor(() => c.count(FRAME.PING) === 150);
    c.data(1, Buffer.from('body'));
    expect(await c.answer(1)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
  });

  it('PING: 5000 in one write end at the 101st, before nghttp2 would refuse to queue more answers', async () => {
    const t = await startProxied();
    const c = await raw(t.port);
    c.write(Buffer.concat(Array.from({ length: 5000 }, () => frame(FRAME.PING, 0, 0, Buffer.alloc(8)))));
    expect((await c.goaway())?.errorCode).toBe(ERROR.ENHANCE_YOUR_CALM);
    expect(await c.untilClosed()).toBe(true);
    expect(c.count(FRAME.PING)).toBeLessThanOrEqual(ABUSE_LIMITS.events);
  });
});

describe('the 10 s window (the guard alone, on fake time)', () => {
  useFakeTime();

  it('forgets what is older: 60 PINGs, 10 s, 60 more are fine; 41 more within 10 s are not', async () => {
    const server = http2.createServer();
    server.on('session', (session) => guardSession(session));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.add({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    const c = await raw((server.address() as AddressInfo).port);
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
  });
});

describe('CONTINUATION flood', () => {
  /** A request whose header block goes on in `continuations` CONTINUATION frames, the last one ending it. */
  function continued(c: RawH2Client, id: number, continuations: number): void {
    c.headers(id, headerBlock(getRequest()), { endHeaders: false });
    for (let i = 1; i <= continuations; i++) c.continuation(id, headerBlock([[`x-more-${i}`, 'a']]), i === continuations);
  }

  it('a header block in 8 CONTINUATION frames is a request like any other', async () => {
    const t = await startProxied();
    const c = await raw(t.port);
    continued(c, 1, 8);
    expect(await c.answer(1)).toEqual({ status: 200 });
  });

  it('a 9th CONTINUATION frame ends the connection (nghttp2, INTERNAL_ERROR); another client is served', async () => {
    const t = await startProxied();
    const polite = await politeClient(t.port);
    const c = await raw(t.port);
    continued(c, 1, 9);
    // nghttp2's own bound, with its own code: Node gives no say in it
    expect(await c.goaway()).toEqual({ errorCode: ERROR.INTERNAL_ERROR, lastStreamId: 1 });
    expect(await c.untilClosed()).toBe(true);
    expect(await polite.get()).toBe(200);
  });
});

describe('concurrent streams', () => {
  it('a well-behaved client with more requests than the limit is served, the limit at a time', async () => {
    const t = await startProxied(10);
    const polite = await politeClient(t.port);
    const all = Promise.all(Array.from({ length: 30 }, () => polite.get('/hold')));
    for (let round = 0; round < 3; round++) {
      await vi.waitUntil(() => t.held() === 10, { timeout: 2000 });
      t.release();
    }
    expect(await all).toEqual(Array(30).fill(200));
    expect(t.mostOpen).toBe(10);
  });

  it('streams past the limit before the client acknowledged it are refused (REFUSED_STREAM), the others answered', async () => {
    const t = await startProxied(10);
    const c = await RawH2Client.connect(t.port);
    cleanup.add({ close: () => c.close() });
    for (let id = 1; id <= 29; id += 2) c.request(id, getRequest('/hold'));
    expect(await c.answer(21)).toEqual({ reset: ERROR.REFUSED_STREAM });
    expect(await c.answer(29)).toEqual({ reset: ERROR.REFUSED_STREAM });
    await vi.waitUntil(() => t.held() === 10, { timeout: 2000 });
    t.release();
    expect(await c.answer(1)).toEqual({ status: 200 });
    expect(await c.answer(19)).toEqual({ status: 200 });
  });

  it('streams past the acknowledged limit are a protocol error: nghttp2 ends the connection', async () => {
    const t = await startProxied(10);
    const c = await raw(t.port);
    await c.waitFor((f) => f.type === FRAME.SETTINGS && f.flags === 1);
    for (let id = 1; id <= 29; id += 2) c.request(id, getRequest('/hold'));
    expect(await c.goaway()).toEqual({ errorCode: ERROR.PROTOCOL_ERROR, lastStreamId: 19 });
  });
});

describe('header lists', () => {
  const fields = (n: number): Array<readonly [string, string]> => Array.from({ length: n }, (_, i) => [`x-h${i}`, 'v'] as const);

  it('larger than maxHeaderBytes: that stream is reset, the connection goes on', async () => {
    const t = await startProxied();
    const c = await raw(t.port);
    c.request(1, getRequest('/', [['x-big', 'a'.repeat(MAX_HEADER_BYTES)]]));
    expect(await c.answer(1)).toEqual({ reset: ERROR.ENHANCE_YOUR_CALM });
    c.request(3, getRequest('/', [['x-fits', 'a'.repeat(MAX_HEADER_BYTES - 500)]]));
    expect(await c.answer(3)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
  });

  it('more fields than maxHeaders (Host from :authority counted): 431, and far more: reset; the connection goes on', async () => {
    const t = await startProxied();
    const c = await raw(t.port);
    c.request(1, getRequest('/', fields(MAX_HEADERS - 1)));
    expect(await c.answer(1)).toEqual({ status: 200 });
    c.request(3, getRequest('/', fields(MAX_HEADERS)));
    expect(await c.answer(3)).toEqual({ status: 431 });
    c.request(5, getRequest('/', fields(MAX_HEADERS + 2)));
    expect(await c.answer(5)).toEqual({ reset: ERROR.ENHANCE_YOUR_CALM });
    c.request(7);
    expect(await c.answer(7)).toEqual({ status: 200 });
    expect(c.count(FRAME.GOAWAY)).toBe(0);
  });
});
