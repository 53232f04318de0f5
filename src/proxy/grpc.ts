// What gRPC means to tandem: a request is gRPC by its content type, and for
// such a request the status that matters is `grpc-status`, its deadline is
// `grpc-timeout`, and tandem's own errors must be answers a gRPC client can
// read (docs/grpc.md).

import type { ErrorCode } from './errors.js';

/** gRPC status codes by number (grpc/doc/statuscodes.md): the metric's grpc_code label. */
export const GRPC_STATUS_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

export type GrpcStatusName = (typeof GRPC_STATUS_NAMES)[number];

export const GRPC_CANCELLED = 1;
export const GRPC_UNKNOWN = 2;
export const GRPC_DEADLINE_EXCEEDED = 4;
export const GRPC_PERMISSION_DENIED = 7;
export const GRPC_RESOURCE_EXHAUSTED = 8;
export const GRPC_UNIMPLEMENTED = 12;
export const GRPC_INTERNAL = 13;
export const GRPC_UNAVAILABLE = 14;
export const GRPC_DATA_LOSS = 15;
export const GRPC_UNAUTHENTICATED = 16;

/** `application/grpc`, `application/grpc+proto`, `application/grpc-web`... */
export function isGrpc(contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.startsWith('application/grpc');
}

/**
 * A known status code as itself; any other number as UNKNOWN, as gRPC
 * clients read a code they do not know. Keeps the metric's label set bounded
 * whatever an upstream sends.
 */
export function knownGrpcStatus(code: number): number {
  return Number.isInteger(code) && code >= 0 && code < GRPC_STATUS_NAMES.length ? code : GRPC_UNKNOWN;
}

export function grpcStatusName(code: number): GrpcStatusName {
  return GRPC_STATUS_NAMES[knownGrpcStatus(code)]!;
}

/** The number in a `grpc-status` header or trailer; null when absent or not a number. */
export function parseGrpcStatus(value: string | string[] | undefined): number | null {
  if (value === undefined) return null;
  const v = Array.isArray(value) ? value[0] : value;
  return v !== undefined && /^\d{1,9}$/.test(v) ? Number(v) : null;
}

/**
 * The status a gRPC request counts under (tandem_grpc_requests_total): the
 * `grpc-status` sent to the client; without one, CANCELLED for a client that
 * left, else what a gRPC client derives from the HTTP status.
 */
export function grpcStatusCounted(sent: number | null, status: number, clientLeft: boolean): number {
  if (sent !== null) return sent;
  return clientLeft ? GRPC_CANCELLED : grpcStatusFromHttp(status);
}

/**
 * The status a gRPC client derives from an answer that carried no
 * `grpc-status` (grpc/doc/http-grpc-status-mapping.md).
 */
export function grpcStatusFromHttp(status: number): number {
  switch (status) {
    case 400:
      return GRPC_INTERNAL;
    case 401:
      return GRPC_UNAUTHENTICATED;
    case 403:
      return GRPC_PERMISSION_DENIED;
    case 404:
      return GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC_UNAVAILABLE;
    default:
      return GRPC_UNKNOWN;
  }
}

/** The `grpc-status` of tandem's own error `code`. */
export function grpcStatusOfError(code: ErrorCode): number {
  switch (code) {
    case 'no_route':
      return GRPC_UNIMPLEMENTED;
    case 'upstream_timeout':
      return GRPC_DEADLINE_EXCEEDED;
    case 'rate_limited':
    case 'payload_too_large':
      return GRPC_RESOURCE_EXHAUSTED;
    case 'unauthorized':
      return GRPC_UNAUTHENTICATED;
    case 'bad_request':
      return GRPC_INTERNAL;
    default:
      return GRPC_UNAVAILABLE;
  }
}

/**
 * The headers of a trailers-only answer to a gRPC request (status 200), as
 * flat name/value pairs: a
 * gRPC client reads the call's status from them, where it would ignore a
 * JSON body. `grpc-message` is percent-encoded as the gRPC wire format asks.
 */
export function grpcErrorHeaders(code: ErrorCode, message: string, requestId: string): string[] {
  return [
    'content-type', 'application/grpc',
    'grpc-status', String(grpcStatusOfError(code)),
    'grpc-message', encodeGrpcMessage(message),
    'x-tandem-error', code,
    'x-request-id', requestId,
  ];
}

// Printable ASCII passes as is, except '%' itself (grpc/doc/PROTOCOL-HTTP2.md).
const NEEDS_ENCODING = /[^\x20-\x24\x26-\x7e]/;

export function encodeGrpcMessage(message: string): string {
  if (!NEEDS_ENCODING.test(message)) return message;
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * For the error-rate breaker and outlier detection: statuses that say the
 * server (or the way to it) failed, like a 5xx (null: no status seen). The others are the caller's
 * business (NOT_FOUND, INVALID_ARGUMENT...) or its own choice (CANCELLED).
 */
export function isGrpcFailure(code: number | null): boolean {
  return code === GRPC_UNKNOWN || code === GRPC_DEADLINE_EXCEEDED || code === GRPC_INTERNAL || code === GRPC_UNAVAILABLE || code === GRPC_DATA_LOSS;
}

// The units of `grpc-timeout`, finest first, in ms.
const TIMEOUT_UNITS: ReadonlyArray<readonly [string, number]> = [
  ['n', 1e-6],
  ['u', 1e-3],
  ['m', 1],
  ['S', 1000],
  ['M', 60_000],
  ['H', 3_600_000],
];
const UNIT_MS: Readonly<Record<string, number>> = Object.fromEntries(TIMEOUT_UNITS);
const MAX_TIMEOUT_VALUE = 99_999_999;
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;

/**
 * A request's `grpc-timeout` in ms (fractions from u and n kept); null when
 * absent or not in the wire format (up to 8 digits and one of H M S m u n),
 * so the route's own timeout applies.
 */
export function parseGrpcTimeout(value: string | string[] | undefined): number | null {
  if (value === undefined || Array.isArray(value)) return null;
  const m = TIMEOUT.exec(value);
  return m === null ? null : Number(m[1]) * UNIT_MS[m[2]!]!;
}

/**
 * `ms` in the finest unit that keeps the value within 8 digits, rounded up
 * there (as grpc-go writes it): a deadline passed on never comes earlier
 * than the one kept here, beyond a nanosecond.
 */
export function formatGrpcTimeout(ms: number): string {
  if (!(ms > 0)) return '0n';
  // whole nanoseconds first, so 0.1 ms is 100000n and not 100001n
  const ns = Math.round(ms * 1e6);
  for (const [unit, unitMs] of TIMEOUT_UNITS) {
    const value = Math.ceil(ns / (unitMs * 1e6));
    if (value <= MAX_TIMEOUT_VALUE) return `${value}${unit}`;
  }
  return `${MAX_TIMEOUT_VALUE}H`;
}

/**
 * The timeout of a gRPC request in ms: its own `grpc-timeout` capped at the
 * route's `maxGrpcTimeout` (0: no cap), or the route timeout when it sent
 * none. 0 means none, as for the route timeout, so a deadline of (almost)
 * nothing gets the shortest timer there is instead.
 */
export function grpcRequestTimeout(requested: number | null, maxGrpcTimeout: number, routeTimeout: number): number {
  if (requested === null) return routeTimeout;
  if (maxGrpcTimeout > 0 && requested > maxGrpcTimeout) return maxGrpcTimeout;
  return Math.max(requested, 1);
}
