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

// Keys, punctuation, the time and numbers of up to 20 digits each, with room to spare.
const FIXED_BYTES = 512;
// An escaped character takes at most 6 bytes (\u001f); a UTF-16 unit at most 3 in UTF-8.
const MAX_BYTES_PER_CHAR = 6;

/** At least the bytes encodeJsonLine writes for `e`. */
export function jsonLineBound(e: AccessLogEntry): number {
  let chars = e.requestId.length + e.traceId.length + (e.spanId === null ? 0 : e.spanId.length) + e.clientIp.length + e.method.length + e.path.length + e.listener.length;
  if (e.route !== null) chars += e.route.length;
  if (e.cluster !== null) chars += e.cluster.length;
  if (e.endpoint !== null) chars += e.endpoint.length;
  for (let i = 0; i < e.flags.length; i++) chars += e.flags[i]!.length + 3;
  return FIXED_BYTES + MAX_BYTES_PER_CHAR * chars;
}

/**
 * Writes the line for `e` into `o` from `start` (which must have
 * jsonLineBound(e) bytes free); returns the end. Each helper takes the
 * buffer and a position and returns the next position: no module state
 * holds the batch between lines.
 */
export function encodeJsonLine(e: AccessLogEntry, o: Buffer, start: number): number {
  let p = lit(o, start, '{"time":"');
  p = time(o, p, e.time);
  p = lit(o, p, '","requestId":"');
  p = str(o, p, e.requestId);
  p = lit(o, p, '","traceId":"');
  p = str(o, p, e.traceId);
  p = lit(o, p, '","spanId":');
  p = nullable(o, p, e.spanId);
  p = lit(o, p, ',"clientIp":"');
  p = str(o, p, e.clientIp);
  p = lit(o, p, '","method":"');
  p = str(o, p, e.method);
  p = lit(o, p, '","path":"');
  p = str(o, p, e.path);
  p = lit(o, p, '","protocol":"');
  p = lit(o, p, e.protocol);
  p = lit(o, p, '","status":');
  p = int(o, p, e.status);
  p = lit(o, p, ',"grpcStatus":');
  p = e.grpcStatus === null ? lit(o, p, 'null') : int(o, p, e.grpcStatus);
  p = lit(o, p, ',"bytesIn":');
  p = int(o, p, e.bytesIn);
  p = lit(o, p, ',"bytesOut":');
  p = int(o, p, e.bytesOut);
  p = lit(o, p, ',"durationMs":');
  p = millis(o, p, e.durationMs);
  p = lit(o, p, ',"upstreamMs":');
  p = e.upstreamMs === null ? lit(o, p, 'null') : millis(o, p, e.upstreamMs);
  p = lit(o, p, ',"listener":"');
  p = str(o, p, e.listener);
  p = lit(o, p, '","route":');
  p = nullable(o, p, e.route);
  p = lit(o, p, ',"cluster":');
  p = nullable(o, p, e.cluster);
  p = lit(o, p, ',"endpoint":');
  p = nullable(o, p, e.endpoint);
  p = lit(o, p, ',"attempts":');
  p = int(o, p, e.attempts);
  p = lit(o, p, ',"flags":[');
  const flags = e.flags;
  for (let i = 0; i < flags.length; i++) {
    p = lit(o, p, i === 0 ? '"' : ',"');
    p = str(o, p, flags[i]!);
    o[p++] = 0x22;
  }
  return lit(o, p, ']}\n');
}

/** A constant of the format: ASCII, nothing to escape. */
function lit(o: Buffer, p: number, s: string): number {
  for (let i = 0; i < s.length; i++) o[p++] = s.charCodeAt(i);
  return p;
}

function str(o: Buffer, begin: number, s: string): number {
  let p = begin;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // rare: start the string again, escaped by JSON.stringify and encoded as UTF-8
    if (c < 0x20 || c === 0x22 || c === 0x5c || c >= 0x7f) return begin + o.write(JSON.stringify(s).slice(1, -1), begin);
    o[p++] = c;
  }
  return p;
}

function nullable(o: Buffer, p: number, s: string | null): number {
  if (s === null) return lit(o, p, 'null');
  o[p++] = 0x22;
  p = str(o, p, s);
  o[p++] = 0x22;
  return p;
}

/** A non-negative integer (a status, a byte count), as JSON writes it. */
function int(o: Buffer, p: number, n: number): number {
  if (n < 10 && n >= 0 && Number.isInteger(n)) {
    o[p++] = 0x30 + n;
    return p;
  }
  if (!Number.isSafeInteger(n) || n < 0) return number(o, p, n);
  let unit = 1;
  while (unit * 10 <= n) unit *= 10;
  for (; unit >= 1; unit /= 10) {
    const digit = Math.floor(n / unit);
    o[p++] = 0x30 + digit;
    n -= digit * unit;
  }
  return p;
}

/** Any other number, as JSON.stringify writes it (null when not finite). */
function number(o: Buffer, p: number, n: number): number {
  return lit(o, p, JSON.stringify(n));
}

/** Milliseconds rounded to the microsecond, as JSON writes such a number: `12.5`, `0.034`, `7`. */
function millis(o: Buffer, p: number, ms: number): number {
  const micros = Math.round(ms * 1000);
  if (!(micros >= 0 && micros <= Number.MAX_SAFE_INTEGER)) return number(o, p, ms);
  const whole = Math.floor(micros / 1000);
  const fraction = micros - whole * 1000;
  p = int(o, p, whole);
  if (fraction === 0) return p;
  o[p++] = 0x2e;
  const tenths = Math.floor(fraction / 100);
  const hundredths = Math.floor(fraction / 10) % 10;
  const thousandths = fraction % 10;
  o[p++] = 0x30 + tenths;
  if (hundredths !== 0 || thousandths !== 0) o[p++] = 0x30 + hundredths;
  if (thousandths !== 0) o[p++] = 0x30 + thousandths;
  return p;
}

/** ISO-8601 UTC with milliseconds, as Date.prototype.toISOString gives. */
function time(o: Buffer, p: number, ms: number): number {
  p = lit(o, p, isoSecondPrefix(ms));
  const milli = ms % 1000;
  o[p++] = 0x30 + Math.floor(milli / 100);
  o[p++] = 0x30 + (Math.floor(milli / 10) % 10);
  o[p++] = 0x30 + (milli % 10);
  o[p++] = 0x5a;
  return p;
}
