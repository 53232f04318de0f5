// Property-based fuzzing of the HTTP/1.1 front door (issue 5): valid requests
// are mutated byte by byte (request line, header names and values, CRLFs,
// lengths, chunk sizes) and sent over raw sockets to an in-process tandem.
// Seeded and bounded, so a failure replays and the file stays fast.

import net from 'node:net';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { parseResponses, rawRequest, simpleConfig, startTandem, startUpstream, useCleanup, waitForAccessLog } from './support/harness.js';

const cleanup = useCleanup();

/** A valid request whose body framing the generator chooses. */
const validRequest = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
    path: fc.constantFrom('/', '/a/b', '/x?y=1', '/%41'),
    body: fc.string({ unit: fc.constantFrom('a', 'b', '0', '\r', '\n'), maxLength: 12 }),
    framing: fc.constantFrom('none', 'length', 'chunked'),
    chunkSize: fc.nat({ max: 16 }),
  })
  .map(({ method, path, body, framing, chunkSize }) => {
    const headLines = [`${method} ${path} HTTP/1.1`, 'Host: a', 'X-Trace: t1'];
    let payload = '';
    if (framing === 'length') {
      headLines.push(`Content-Length: ${body.length}`);
      payload = body;
    } else if (framing === 'chunked') {
      headLines.push('Transfer-Encoding: chunked');
      const size = Math.max(1, chunkSize);
      for (let at = 0; at < body.length; at += size) {
        const piece = body.slice(at, at + size);
        payload += `${piece.length.toString(16)}\r\n${piece}\r\n`;
      }
      payload += '0\r\n\r\n';
    }
    headLines.push('Connection: close');
    return `${headLines.join('\r\n')}\r\n\r\n${payload}`;
  });

/** Bytes that matter to HTTP framing, plus any byte at all. */
const interestingByte = fc.oneof(
  fc.constantFrom('\r', '\n', '\r\n', ' ', '\t', '\0', ':', ',', ';', '-', '+', '0', '5', 'f', 'x', 'chunked', 'Content-Length: 3\r\n', 'Transfer-Encoding: chunked\r\n', 'GET / HTTP/1.1\r\nHost: a\r\n\r\n'),
  fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b)),
);

type Mutation = { kind: 'insert' | 'replace'; at: number; bytes: string } | { kind: 'delete'; at: number; count: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: interestingByte }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), bytes: interestingByte }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 4 }) }),
);

function mutate(request: string, mutations: Mutation[]): string {
  let out = request;
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % out.length;
    if (m.kind === 'delete') out = out.slice(0, at) + out.slice(at + m.count);
    else out = out.slice(0, at) + m.bytes + out.slice(m.kind === 'insert' ? at : at + m.bytes.length);
  }
  return out;
}

/**
 * Sends `bytes` and collects the answer until the server closes. tandem takes
 * a half-close as the client going away (499), so the socket stays open for
 * `idleMs` first, letting a complete request be answered; only then does the
 * half-close end a request the mutation left incomplete.
 */
function send(port: number, bytes: string, idleMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(halfClose);
      clearTimeout(giveUp);
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const halfClose = setTimeout(() => socket.end(), idleMs);
    const giveUp = setTimeout(done, idleMs + 1000);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', done);
    socket.on('error', done);
    socket.write(Buffer.from(bytes, 'latin1'));
  });
}

it('mutated requests: tandem stays up, answers are well-formed, the upstream never serves more than the client saw succeed', async () => {
  const up = cleanup.add(await startUpstream());
  const t = cleanup.add(await startTandem(simpleConfig([up.port])));
  let succeeded = 0;
  let answered = 0;
  let runs = 0;
  const statuses = new Set<number>();
  await fc.assert(
    fc.asyncProperty(validRequest, fc.array(mutation, { minLength: 1, maxLength: 4 }), async (request, mutations) => {
      runs++;
      const text = await send(t.port, mutate(request, mutations), 150);
      const responses = parseResponses(text);
      // nothing in the bodies here ("ok", tandem's JSON) looks like a status line, so every one starts a response
      const statusLines = text.match(/HTTP\/1\.[01] \d{3} [^\r\n]*\r\n/g) ?? [];
      expect(text === '' || /^HTTP\/1\.1 [1-5]\d\d [^\r\n]*\r\n/.test(text), text).toBe(true);
      expect(responses.length, text).toBe(statusLines.length);
      for (const r of responses) {
        expect(r.status >= 100 && r.status <= 599, text).toBe(true);
        statuses.add(r.status);
      }
      answered += responses.length;
      succeeded += responses.filter((r) => r.status >= 200 && r.status < 300).length;
      expect(up.seen.length).toBeLessThanOrEqual(succeeded);
    }),
    { numRuns: 200, seed: 20261126, interruptAfterTimeLimit: 15_000 },
  );
  expect(runs).toBeGreaterThan(50);
  // the mutations reach both sides of the parser, or the invariants above proved nothing
  expect(statuses).toContain(200);
  expect(statuses).toContain(400);
  expect(up.seen.length).toBeGreaterThan(0);
  // every answer is a logged request, the parser's refusals included (a
  // client that left unanswered adds a line of its own)
  expect((await waitForAccessLog(t, answered)).length).toBeGreaterThanOrEqual(answered);
  const after = await rawRequest(t.port, 'GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
  expect(parseResponses(after.text).map((r) => [r.status, r.body])).toEqual([[200, 'ok']]);
  expect(up.seen.at(-1)!.url).toBe('/after');
}, 20_000);
