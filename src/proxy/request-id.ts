// Request ids and W3C trace context for every request.
//
// x-request-id: the client's value is kept when it is 1..200 characters of
// [A-Za-z0-9] and `-._:+/=` (UUIDs, ULIDs, hex and base64 ids pass; spaces,
// commas, quotes and control characters do not, so the id is safe in logs
// and headers). Several values (Node joins repeated lines with ', ', which
// fails the rule) are not sane either. Otherwise a new random UUID.
//
// traceparent, without tracing: kept unchanged when valid, since tandem
// records no span of its own (with tracing, src/tracing/tracer.ts decides).
// Valid is version 00 exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase,
// trace id and parent id not all zeros; a higher version (not `ff`) is
// accepted when its first 55 characters have that shape and, if longer, the
// 56th is '-' (W3C Trace Context §4.3 / §3.2.4). Otherwise a new trace starts
// with random ids and flags `01` (sampled): an application whose tracer
// follows its parent's sampling decision keeps tracing as it did without
// tandem in front, where `00` would silently switch its traces off.
import { randomFillSync } from 'node:crypto';

const MAX_REQUEST_ID = 200;

export function requestIdFrom(value: string | string[] | undefined): string {
  return typeof value === 'string' && isSaneRequestId(value) ? value : newUuid();
}

export function traceFrom(value: string | string[] | undefined): { traceparent: string; traceId: string } {
  if (typeof value === 'string' && isValidTraceparent(value)) {
    return { traceparent: value, traceId: value.slice(3, 35) };
  }
  const traceparent = newTraceparent(true);
  return { traceparent, traceId: traceparent.slice(3, 35) };
}

function isSaneRequestId(v: string): boolean {
  const n = v.length;
  if (n === 0 || n > MAX_REQUEST_ID) return false;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    // - . _ : + / =
    if (!alnum && c !== 0x2d && c !== 0x2e && c !== 0x5f && c !== 0x3a && c !== 0x2b && c !== 0x2f && c !== 0x3d) return false;
  }
  return true;
}

const V00_LENGTH = 55;

export function isValidTraceparent(v: string): boolean {
  const n = v.length;
  if (n < V00_LENGTH) return false;
  if (!isLowerHex(v, 0, 2) || v.startsWith('ff')) return false;
  if (v.startsWith('00') ? n !== V00_LENGTH : n > V00_LENGTH && v.charCodeAt(V00_LENGTH) !== 0x2d) return false;
  return (
    v.charCodeAt(2) === 0x2d &&
    v.charCodeAt(35) === 0x2d &&
    v.charCodeAt(52) === 0x2d &&
    isLowerHex(v, 3, 35) &&
    isLowerHex(v, 36, 52) &&
    isLowerHex(v, 53, 55) &&
    !allZeros(v, 3, 35) &&
    !allZeros(v, 36, 52)
  );
}

function isLowerHex(s: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

function allZeros(s: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (s.charCodeAt(i) !== 0x30) return false;
  return true;
}

// New ids are written as ASCII into a scratch buffer and read back as one
// string: node's randomUUID and hex-slicing built each id from a dozen
// string pieces, about 900 bytes of garbage per request between the two.

const TRACE_ID_BYTES = 16;
const PARENT_ID_BYTES = 8;
const UUID_BYTES = 16;

// One syscall fills randomness for about 170 new traces or 250 request ids.
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;
const scratch = Buffer.alloc(64);
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/** Offset in `pool` of `n` fresh random bytes. */
function take(n: number): number {
  if (poolOffset + n > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const start = poolOffset;
  poolOffset += n;
  return start;
}

/** Writes `n` random bytes from `from` as lowercase hex at `at` in the scratch buffer; returns the end. */
function hex(from: number, n: number, at: number): number {
  for (let i = from; i < from + n; i++) {
    const b = pool[i]!;
    scratch[at++] = HEX[b >> 4]!;
    scratch[at++] = HEX[b & 15]!;
  }
  return at;
}

/** A random (version 4) UUID, as crypto.randomUUID gives. */
function newUuid(): string {
  const r = take(UUID_BYTES);
  pool[r + 6] = (pool[r + 6]! & 0x0f) | 0x40;
  pool[r + 8] = (pool[r + 8]! & 0x3f) | 0x80;
  let at = hex(r, 4, 0);
  scratch[at++] = 0x2d;
  at = hex(r + 4, 2, at);
  scratch[at++] = 0x2d;
  at = hex(r + 6, 2, at);
  scratch[at++] = 0x2d;
  at = hex(r + 8, 2, at);
  scratch[at++] = 0x2d;
  at = hex(r + 10, 6, at);
  return scratch.toString('latin1', 0, at);
}

/** The sampled bit of a valid traceparent's flags. */
export function sampledFlag(traceparent: string): boolean {
  const c = traceparent.charCodeAt(54);
  // the flags' low hex digit: '1', '3', ... '9', 'b', 'd', 'f' are odd
  return c <= 0x39 ? (c & 1) === 1 : (c & 1) === 0;
}

/** 16 random lowercase hex characters, never all zeros. */
export function newSpanId(): string {
  const r = take(PARENT_ID_BYTES);
  pool[r + PARENT_ID_BYTES - 1] = pool[r + PARENT_ID_BYTES - 1]! | 1;
  return scratch.toString('latin1', 0, hex(r, PARENT_ID_BYTES, 0));
}

/** `00-<trace id>-<parent id>-<01|00>` with fresh random ids. */
export function newTraceparent(sampled: boolean): string {
  const r = take(TRACE_ID_BYTES + PARENT_ID_BYTES);
  // An all-zero id is invalid; setting one bit of each rules it out at the
  // cost of a negligible share of randomness.
  pool[r + TRACE_ID_BYTES - 1] = pool[r + TRACE_ID_BYTES - 1]! | 1;
  pool[r + TRACE_ID_BYTES + PARENT_ID_BYTES - 1] = pool[r + TRACE_ID_BYTES + PARENT_ID_BYTES - 1]! | 1;
  scratch[0] = 0x30; // 00-
  scratch[1] = 0x30;
  scratch[2] = 0x2d;
  let at = hex(r, TRACE_ID_BYTES, 3);
  scratch[at++] = 0x2d;
  at = hex(r + TRACE_ID_BYTES, PARENT_ID_BYTES, at);
  scratch[at++] = 0x2d; // -01 sampled, -00 not
  scratch[at++] = 0x30;
  scratch[at++] = sampled ? 0x31 : 0x30;
  return scratch.toString('latin1', 0, at);
}
