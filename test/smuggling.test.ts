// Request-smuggling shapes not pinned elsewhere (issue 5): TE.CL, signed and
// non-numeric Content-Length, obs-fold, NUL and bare CR in header values, and
// a pipelined request after a body. The upstream is raw and frames what it
// gets itself, so the test counts the requests it would have served instead
// of trusting another HTTP parser to agree with tandem's.

import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import { expectRawTandemError, header, parseResponses, rawRequest, simpleConfig, startRawUpstream, startTandem, useCleanup } from './support/harness.js';

const cleanup = useCleanup();

interface FramedRequest {
  head: string;
  body: string;
}

/**
 * A raw upstream that splits its byte stream into requests framed by
 * Content-Length (no length: no body) and answers each with 200 `ok`.
 * `bytes` counts everything received; `leftover` is what framed as nothing.
 */
async function framingUpstream() {
  const state = { bytes: 0, requests: [] as FramedRequest[], leftover: '' };
  const up = await startRawUpstream((socket: net.Socket) => {
    let pending = '';
    socket.on('data', (d: Buffer) => {
      state.bytes += d.length;
      pending += d.toString('latin1');
      for (;;) {
        const end = pending.indexOf('\r\n\r\n');
        if (end === -1) break;
        const head = pending.slice(0, end);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (pending.length < end + 4 + length) break;
        state.requests.push({ head, body: pending.slice(end + 4, end + 4 + length) });
        pending = pending.slice(end + 4 + length);
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
      }
      state.leftover = pending;
    });
  });
  cleanup.add(up);
  return { port: up.port, state };
}

/** The request line of each request the upstream framed. */
function requestLines(requests: FramedRequest[]): string[] {
  return requests.map((r) => r.head.slice(0, r.head.indexOf('\r\n')));
}

describe('refused before anything goes upstream', () => {
  // Under Content-Length: 4 a CL-framing hop would read `5c\r\n` as the body
  // and the rest, `GPOST / ...`, as a second request.
  const smuggled = 'GPOST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 15\r\n\r\nx=1';
  const teCl =
    'POST /te-cl HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n' +
    `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;

  it.each([
    ['TE.CL: chunked first, a Content-Length that ends inside the first chunk', teCl],
    ['Content-Length: +5', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello'],
    ['Content-Length: -1', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nhello'],
    ['Content-Length: 5, 5', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello'],
    ['Content-Length: 0x5', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello'],
    ['obs-fold with a space', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\nConnection: close\r\n\r\n'],
    ['obs-fold with a tab', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\nConnection: close\r\n\r\n'],
    // a hop that unfolds would keep CL, one that reads the fold as a header would see chunked
    ['obs-fold hiding Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\nabc'],
    ['NUL inside a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\nConnection: close\r\n\r\n'],
    ['a bare CR inside a header value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\nConnection: close\r\n\r\n'],
    // a hop that takes a bare CR as a line end would see a Content-Length here
    ['a bare CR hiding Content-Length', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rContent-Length: 5\r\n\r\nhello'],
  ])('%s: 400 bad_request, closed, the upstream gets not one byte', async (_what, bytes) => {
    const up = await framingUpstream();
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const raw = await rawRequest(t.port, bytes);
    const all = parseResponses(raw.text);
    expect(all, raw.text).toHaveLength(1);
    expectRawTandemError(all[0]!, 400, 'bad_request', { close: true });
    expect(raw.closed).toBe(true);
    expect(up.state.bytes).toBe(0);
    expect(up.state.requests).toHaveLength(0);
  });
});

describe('framed the way the bytes say', () => {
  it('Content-Length with leading whitespace (OWS) is the length 5', async () => {
    const up = await framingUpstream();
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const raw = await rawRequest(t.port, 'POST /ows HTTP/1.1\r\nHost: a\r\nContent-Length:  5\r\nConnection: close\r\n\r\nhello');
    const all = parseResponses(raw.text);
    expect(all.map((r) => [r.status, r.body])).toEqual([[200, 'ok']]);
    expect(requestLines(up.state.requests)).toEqual(['POST /ows HTTP/1.1']);
    expect(up.state.requests[0]!.head).toMatch(/\r\ncontent-length: 5(\r\n|$)/i);
    expect(up.state.requests[0]!.body).toBe('hello');
    expect(up.state.leftover).toBe('');
  });

  it.each([
    ['a Content-Length body', 'POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello'],
    ['a chunked body', 'POST /1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'],
  ])('a request pipelined after %s is answered on its own, and the upstream frames exactly two requests', async (_what, first) => {
    const up = await framingUpstream();
    const t = cleanup.add(await startTandem(simpleConfig([up.port])));
    const raw = await rawRequest(t.port, `${first}GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`);
    expect(raw.closed).toBe(true);
    const all = parseResponses(raw.text);
    expect(all.map((r) => [r.status, r.body])).toEqual([
      [200, 'ok'],
      [200, 'ok'],
    ]);
    expect(header(all[0]!, 'x-request-id')).not.toBe(header(all[1]!, 'x-request-id'));
    // both are in flight at once, on connections of their own: either may reach the upstream first
    const byLine = new Map(up.state.requests.map((r) => [requestLines([r])[0], r]));
    expect([...byLine.keys()].sort()).toEqual(['GET /2 HTTP/1.1', 'POST /1 HTTP/1.1']);
    expect(byLine.get('POST /1 HTTP/1.1')!.body).toBe('hello');
    expect(byLine.get('GET /2 HTTP/1.1')!.body).toBe('');
    // the second request carries no body framing the first one's bytes could spill into
    expect(byLine.get('GET /2 HTTP/1.1')!.head).not.toMatch(/content-length|transfer-encoding/i);
    expect(up.state.leftover).toBe('');
  });
});
