// The JSON access-log line (CONTRACT §9, in its field order), encoded
// straight into the access log's batch buffer. Built as a string, a line
// cost about 2 KB of garbage (a rope of template pieces, number strings,
// then its flattened copy for the encoder): more than a tenth of all that a
// proxied request allocates, and so of the scavenges a small young
// generation runs. Here a line allocates nothing.
//
// Every string is JSON-escaped when it holds a character that needs it (or
// one outside ASCII, left to the UTF-8 encoder); the common line, all
// printable ASCII, is copied a character at a time.

import type { AccessLogEntry } from './access-log.js';
import { isoSecondPrefix } from './log-time.js';

const EMPTY: Buffer = Buffer.alloc(0);
// The buffer being written and the position in it, for the duration of one encodeJsonLine call.
let out = EMPTY;
let at = 0;

// Keys, punctuation, the time and numbers of up to 20 digits each, with room to spare.
const FIXED_BYTES = 512;
// An escaped character takes at most 6 bytes (\u001f); a UTF-16 unit at most 3 in UTF-8.
const MAX_BYTES_PER_CHAR = 6;

/** At least the bytes encodeJsonLine writes for `e`. */
export function jsonLineBound(e: AccessLogEntry): number {
  let chars = e.requestId.length + e.traceId.length + e.clientIp.length + e.method.length + e.path.length + e.listener.length;
  if (e.route !== null) chars += e.route.length;
  if (e.cluster !== null) chars += e.cluster.length;
  if (e.endpoint !== null) chars += e.endpoint.length;
  for (let i = 0; i < e.flags.length; i++) chars += e.flags[i]!.length + 3;
  return FIXED_BYTES + MAX_BYTES_PER_CHAR * chars;
}

/** Writes the line for `e` into `buf` from `start` (which must have jsonLineBound(e) bytes free); returns the end. */
export function encodeJsonLine(e: AccessLogEntry, buf: Buffer, start: number): number {
  out = buf;
  at = start;
  lit('{"time":"');
  time(e.time);
  lit('","requestId":"');
  str(e.requestId);
  lit('","traceId":"');
  str(e.traceId);
  lit('","clientIp":"');
  str(e.clientIp);
  lit('","method":"');
  str(e.method);
  lit('","path":"');
  str(e.path);
  lit('","status":');
  int(e.status);
  lit(',"bytesIn":');
  int(e.bytesIn);
  lit(',"bytesOut":');
  int(e.bytesOut);
  lit(',"durationMs":');
  millis(e.durationMs);
  lit(',"upstreamMs":');
  if (e.upstreamMs === null) lit('null');
  else millis(e.upstreamMs);
  lit(',"listener":"');
  str(e.listener);
  lit('","route":');
  nullable(e.route);
  lit(',"cluster":');
  nullable(e.cluster);
  lit(',"endpoint":');
  nullable(e.endpoint);
  lit(',"attempts":');
  int(e.attempts);
  lit(',"flags":[');
  for (let i = 0; i < e.flags.length; i++) {
    lit(i === 0 ? '"' : ',"');
    str(e.flags[i]!);
    lit('"');
  }
  lit(']}\n');
  const end = at;
  // the batch must not stay reachable from here once it was handed over
  out = EMPTY;
  return end;
}

/** A constant of the format: ASCII, nothing to escape. */
function lit(s: string): void {
  // locals, so the loop keeps them in registers rather than in module slots
  const o = out;
  let p = at;
  for (let i = 0; i < s.length; i++) o[p++] = s.charCodeAt(i);
  at = p;
}

function str(s: string): void {
  const o = out;
  const begin = at;
  let p = begin;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || c >= 0x7f) {
      // rare: start the string again, escaped by JSON.stringify and encoded as UTF-8
      at = begin + o.write(JSON.stringify(s).slice(1, -1), begin);
      return;
    }
    o[p++] = c;
  }
  at = p;
}

function nullable(s: string | null): void {
  if (s === null) return lit('null');
  lit('"');
  str(s);
  lit('"');
}

/** A non-negative integer (a status, a byte count), as JSON writes it. */
function int(n: number): void {
  if (n < 10 && n >= 0 && Number.isInteger(n)) {
    out[at++] = 0x30 + n;
    return;
  }
  if (!Number.isSafeInteger(n) || n < 0) return number(n);
  let unit = 1;
  while (unit * 10 <= n) unit *= 10;
  for (; unit >= 1; unit /= 10) {
    const digit = Math.floor(n / unit);
    out[at++] = 0x30 + digit;
    n -= digit * unit;
  }
}

/** Any other number, as JSON.stringify writes it (null when not finite). */
function number(n: number): void {
  lit(JSON.stringify(n));
}

/** Milliseconds rounded to the microsecond, as JSON writes such a number: `12.5`, `0.034`, `7`. */
function millis(ms: number): void {
  const micros = Math.round(ms * 1000);
  if (!(micros >= 0 && micros <= Number.MAX_SAFE_INTEGER)) return number(ms);
  const whole = Math.floor(micros / 1000);
  const fraction = micros - whole * 1000;
  int(whole);
  if (fraction === 0) return;
  out[at++] = 0x2e;
  const tenths = Math.floor(fraction / 100);
  const hundredths = Math.floor(fraction / 10) % 10;
  const thousandths = fraction % 10;
  out[at++] = 0x30 + tenths;
  if (hundredths !== 0 || thousandths !== 0) out[at++] = 0x30 + hundredths;
  if (thousandths !== 0) out[at++] = 0x30 + thousandths;
}

/** ISO-8601 UTC with milliseconds, as Date.prototype.toISOString gives. */
function time(ms: number): void {
  lit(isoSecondPrefix(ms));
  const milli = ms % 1000;
  out[at++] = 0x30 + Math.floor(milli / 100);
  out[at++] = 0x30 + (Math.floor(milli / 10) % 10);
  out[at++] = 0x30 + (milli % 10);
  out[at++] = 0x5a;
}
