// Header rules of the data path (CONTRACT §3), both directions, one pass
// each and no lowercasing: header names are classified by length and a
// case-insensitive compare, so the usual request costs no string allocation
// beyond the output array.
//
// To the upstream (buildUpstreamHeaders, from `req.rawHeaders`):
// - dropped: Connection and every header its tokens name, Keep-Alive,
//   Proxy-Connection, TE (but `te: trailers` is sent when the client's TE
//   lists `trailers`), Trailer, Transfer-Encoding, Upgrade, HTTP2-Settings,
//   Proxy-Authorization, Proxy-Authenticate, Expect (tandem answers it),
//   `x-tandem-*` (clients must not steer tandem), names with an underscore
//   when `dropUnderscored`. A Connection token naming
//   Host or TE is ignored (Host is required; TE is legitimately listed there).
// - host: `hostOverride` (rewrite.host) or the client's Host.
// - x-forwarded-for: the client's values (repeated lines joined with ', ')
//   with `clientIp` appended; x-forwarded-proto, x-request-id and traceparent
//   are replaced by tandem's values. x-forwarded-client-cert is always
//   dropped: tandem sends its own (`clientCert`) only for a client
//   certificate it verified itself.
// - route ops last: every header named in `remove` or `set` is dropped, then
//   the `set` pairs are added. Ops may remove or replace x-forwarded-for,
//   x-forwarded-proto and traceparent; they cannot touch the protected names
//   (hop-by-hop ones, host, expect, content-length, x-request-id,
//   x-forwarded-client-cert), which
//   compileHeaderOps leaves out: use rewrite.host for the Host.
// Repeated headers (several cookie lines) stay separate pairs: the result is
// the flat `[name, value, ...]` array undici's dispatch accepts.
//
// To the client (buildResponseHeaders): integrate with undici's
// `onResponseStart(controller, statusCode, headers)`: undici parses the head
// into that object for every handler anyway (lowercase names, repeated
// headers as arrays), so reading it costs nothing more, while the raw
// `controller.rawHeaders` buffers would need decoding again. The result is a
// flat array for `res.writeHead(status, array)`, which Node 24 accepts and
// which keeps each set-cookie line; it appends to headers set before with
// `res.setHeader`. Hop-by-hop headers (and those Connection names) are
// dropped; Node's server writes its own connection, keep-alive and framing
// headers. The upstream's x-request-id is replaced by tandem's. An upgrade
// (101) answer loses Connection and Upgrade here like any other: the
// upgrade path must write those itself.
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderOpsConfig } from '../config/types.js';

/**
 * A route's header operations, ready for the hot path. Names are kept in a
 * short array rather than a Set: incoming names arrive in any case, and a
 * case-insensitive compare against a few names beats lowercasing every
 * header to probe a Set.
 */
export interface CompiledHeaderOps {
  /** lowercase names whose incoming headers are dropped: every removed and every set name */
  readonly drop: readonly string[];
  /** flat [name, value, ...] pairs added last */
  readonly set: readonly string[];
  /** GENERATED_* bits of tandem-generated request headers that the ops remove or replace */
  readonly replacesGenerated: number;
}

export interface UpstreamHeaderOptions {
  clientIp: string;
  proto: 'http' | 'https';
  requestId: string;
  traceparent: string;
  hostOverride?: string;
  /** x-forwarded-client-cert of the verified client certificate (mTLS) */
  clientCert?: string;
  ops?: CompiledHeaderOps;
  /** leave out headers whose name has an underscore (the listener's `headersWithUnderscores: drop`) */
  dropUnderscored?: boolean;
}

export function compileHeaderOps(cfg: HeaderOpsConfig | undefined): CompiledHeaderOps | undefined {
  if (cfg === undefined) return undefined;
  const drop: string[] = [];
  const set: string[] = [];
  let replacesGenerated = 0;
  const take = (name: string): boolean => {
    const lower = name.toLowerCase();
    const kind = classify(lower);
    if (PROTECTED.has(kind) || lower === 'content-length') return false;
    replacesGenerated |= generatedBit(kind);
    if (!drop.includes(lower)) drop.push(lower);
    return true;
  };
  for (const name of cfg.remove ?? []) take(name);
  for (const [name, value] of Object.entries(cfg.set ?? {})) {
    if (take(name)) set.push(name.toLowerCase(), value);
  }
  if (drop.length === 0) return undefined;
  return { drop, set, replacesGenerated };
}

/** Request headers for undici's dispatch, built from the client's `req.rawHeaders`. */
export function buildUpstreamHeaders(raw: string[], opts: UpstreamHeaderOptions): string[] {
  const ops = opts.ops;
  const drop = ops === undefined ? NO_NAMES : ops.drop;
  const dropUnderscored = opts.dropUnderscored === true;
  const out: string[] = [];
  let host: string | undefined;
  let forwardedFor: string | undefined;
  let connectionNamed: string[] | undefined;
  let teTrailers = false;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    switch (classify(name)) {
      case PLAIN:
        if (dropUnderscored && name.includes('_')) break;
        if (drop.length === 0 || !inList(name, drop)) out.push(name, value);
        break;
      case CONNECTION:
        connectionNamed = connectionTokens(value, connectionNamed);
        break;
      case TE:
        teTrailers ||= hasToken(value, 'trailers');
        break;
      case HOST:
        host ??= value;
        break;
      case FORWARDED_FOR:
        forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
        break;
      default:
      // hop-by-hop, expect, x-tandem-*, and the headers tandem sets itself
    }
  }
  if (connectionNamed !== undefined) {
    removeNamed(out, connectionNamed);
    if (connectionNamed.includes('x-forwarded-for')) forwardedFor = undefined;
  }

  const replaced = ops === undefined ? 0 : ops.replacesGenerated;
  const upstreamHost = opts.hostOverride ?? host;
  if (upstreamHost !== undefined) out.push('host', upstreamHost);
  if ((replaced & GENERATED_FORWARDED_FOR) === 0) {
    out.push('x-forwarded-for', forwardedFor === undefined ? opts.clientIp : `${forwardedFor}, ${opts.clientIp}`);
  }
  if ((replaced & GENERATED_FORWARDED_PROTO) === 0) out.push('x-forwarded-proto', opts.proto);
  out.push('x-request-id', opts.requestId);
  if ((replaced & GENERATED_TRACEPARENT) === 0) out.push('traceparent', opts.traceparent);
  if (teTrailers) out.push('te', 'trailers');
  if (opts.clientCert !== undefined) out.push('x-forwarded-client-cert', opts.clientCert);
  if (ops !== undefined) pushAll(out, ops.set);
  return out;
}

/**
 * The index of the value of header `name` (lowercase; matched in any case)
 * in `headers` (from buildUpstreamHeaders) that still holds `value`, so each
 * try can put its own there (tandem's traceparent, a gRPC request's time
 * left); -1 when route ops replaced or removed it.
 */
export function headerSlot(headers: readonly string[], name: string, value: string): number {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const n = headers[i]!;
    if (headers[i + 1] === value && n.length === name.length && (n === name || n.toLowerCase() === name)) return i + 1;
  }
  return -1;
}

/** Response headers for `res.writeHead(status, headers)`, from the object undici's onResponseStart gives. */
export function buildResponseHeaders(headers: IncomingHttpHeaders, requestId: string, ops?: CompiledHeaderOps): string[] {
  const drop = ops === undefined ? NO_NAMES : ops.drop;
  // typed as a string, but undici gives an array when the line repeats
  const connection = headers.connection as string | string[] | undefined;
  const connectionNamed =
    connection === undefined ? undefined : connectionTokens(typeof connection === 'string' ? connection : connection.join(','), undefined);
  const out: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    const kind = classify(name);
    if (kind === HOP || kind === CONNECTION || kind === TE || kind === REQUEST_ID) continue;
    if (drop.length !== 0 && inList(name, drop)) continue;
    if (connectionNamed !== undefined && inList(name, connectionNamed)) continue;
    if (typeof value === 'string') out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  if (ops !== undefined) pushAll(out, ops.set);
  out.push('x-request-id', requestId);
  return out;
}

// header kinds
const PLAIN = 0;
const HOP = 1;
const CONNECTION = 2;
const TE = 3;
const HOST = 4;
const EXPECT = 5;
const FORWARDED_FOR = 6;
const FORWARDED_PROTO = 7;
const REQUEST_ID = 8;
const TRACEPARENT = 9;
const TANDEM = 10;
const CLIENT_CERT = 11;

const PROTECTED = new Set([HOP, CONNECTION, TE, HOST, EXPECT, REQUEST_ID, CLIENT_CERT]);

const GENERATED_FORWARDED_FOR = 1;
const GENERATED_FORWARDED_PROTO = 2;
const GENERATED_TRACEPARENT = 4;

function generatedBit(kind: number): number {
  if (kind === FORWARDED_FOR) return GENERATED_FORWARDED_FOR;
  if (kind === FORWARDED_PROTO) return GENERATED_FORWARDED_PROTO;
  if (kind === TRACEPARENT) return GENERATED_TRACEPARENT;
  return 0;
}

const NO_NAMES: readonly string[] = [];

/** The kind of a header name, in any letter case. */
function classify(name: string): number {
  switch (name.length) {
    case 2:
      if (eqi(name, 'te')) return TE;
      break;
    case 4:
      if (eqi(name, 'host')) return HOST;
      break;
    case 6:
      if (eqi(name, 'expect')) return EXPECT;
      break;
    case 7:
      if (eqi(name, 'upgrade') || eqi(name, 'trailer')) return HOP;
      break;
    case 10:
      if (eqi(name, 'connection')) return CONNECTION;
      if (eqi(name, 'keep-alive')) return HOP;
      break;
    case 11:
      if (eqi(name, 'traceparent')) return TRACEPARENT;
      break;
    case 12:
      if (eqi(name, 'x-request-id')) return REQUEST_ID;
      break;
    case 14:
      if (eqi(name, 'http2-settings')) return HOP;
      break;
    case 15:
      if (eqi(name, 'x-forwarded-for')) return FORWARDED_FOR;
      break;
    case 16:
      if (eqi(name, 'proxy-connection')) return HOP;
      break;
    case 17:
      if (eqi(name, 'transfer-encoding')) return HOP;
      if (eqi(name, 'x-forwarded-proto')) return FORWARDED_PROTO;
      break;
    case 18:
      if (eqi(name, 'proxy-authenticate')) return HOP;
      break;
    case 19:
      if (eqi(name, 'proxy-authorization')) return HOP;
      break;
    case 23:
      if (eqi(name, 'x-forwarded-client-cert')) return CLIENT_CERT;
      break;
  }
  return startsWithi(name, 'x-tandem-') ? TANDEM : PLAIN;
}

/** `s` equals `lower` (a lowercase ASCII name) ignoring the case of letters. */
function eqi(s: string, lower: string): boolean {
  return s.length === lower.length && startsWithi(s, lower);
}

function startsWithi(s: string, lower: string): boolean {
  if (s.length < lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const c = s.charCodeAt(i);
    const l = lower.charCodeAt(i);
    if (c !== l && !(l >= 0x61 && l <= 0x7a && c === l - 0x20)) return false;
  }
  return true;
}

function inList(name: string, lowerNames: readonly string[]): boolean {
  for (let i = 0; i < lowerNames.length; i++) if (eqi(name, lowerNames[i]!)) return true;
  return false;
}

/**
 * Adds the header names a Connection value lists (lowercase) to `into`; the
 * common `keep-alive` / `close` values allocate nothing. Tokens naming
 * hop-by-hop headers (dropped anyway), Host or TE are skipped.
 */
function connectionTokens(value: string, into: string[] | undefined): string[] | undefined {
  if (eqi(value, 'keep-alive') || eqi(value, 'close')) return into;
  for (const part of value.split(',')) {
    const token = part.trim().toLowerCase();
    if (token.length === 0) continue;
    const kind = classify(token);
    if (kind === HOP || kind === CONNECTION || kind === TE || kind === HOST) continue;
    (into ??= []).push(token);
  }
  return into;
}

/** `value` (a comma-separated list, parameters allowed) contains `token`, ignoring case. */
function hasToken(value: string, token: string): boolean {
  for (const part of value.split(',')) {
    const semi = part.indexOf(';');
    if (eqi((semi === -1 ? part : part.slice(0, semi)).trim(), token)) return true;
  }
  return false;
}

/** Removes, in place, the pairs whose name is in `lowerNames`. */
function removeNamed(pairs: string[], lowerNames: readonly string[]): void {
  let w = 0;
  for (let r = 0; r < pairs.length; r += 2) {
    if (inList(pairs[r]!, lowerNames)) continue;
    pairs[w] = pairs[r]!;
    pairs[w + 1] = pairs[r + 1]!;
    w += 2;
  }
  pairs.length = w;
}

function pushAll(out: string[], pairs: readonly string[]): void {
  for (let i = 0; i < pairs.length; i++) out.push(pairs[i]!);
}
