// The responses tandem generates itself (CONTRACT §4). Each code has one
// status and one default message; the bodies are built per request only
// because they carry the request id.

import { http } from '../node-http.js';
import type { Flag } from './exchange.js';

export type ErrorCode =
  | 'bad_request'
  | 'method_not_allowed'
  | 'expectation_failed'
  | 'request_timeout'
  | 'headers_too_large'
  | 'no_route'
  | 'upstream_connect_failure'
  | 'upstream_reset'
  | 'upstream_timeout'
  | 'no_healthy_upstream'
  | 'circuit_open'
  | 'overflow'
  | 'payload_too_large'
  | 'rate_limited'
  | 'unauthorized';

interface ErrorSpec {
  status: number;
  message: string;
  /** the access-log flag the answer carries */
  flag?: Flag;
  /** the request itself is refused: the rest of its bytes cannot be trusted, so the connection closes */
  closes?: true;
}

export const ERRORS: Readonly<Record<ErrorCode, ErrorSpec>> = {
  bad_request: { status: 400, message: 'malformed request', closes: true },
  method_not_allowed: { status: 405, message: 'method not allowed', closes: true },
  expectation_failed: { status: 417, message: 'unsupported expectation', closes: true },
  request_timeout: { status: 408, message: 'request not received in time', closes: true },
  headers_too_large: { status: 431, message: 'request header fields too large', closes: true },
  no_route: { status: 404, message: 'no route matched the request', flag: 'NR' },
  upstream_connect_failure: { status: 502, message: 'could not connect to the upstream', flag: 'UF' },
  upstream_reset: { status: 502, message: 'upstream closed the connection before responding', flag: 'UR' },
  upstream_timeout: { status: 504, message: 'upstream did not respond in time', flag: 'UT' },
  no_healthy_upstream: { status: 503, message: 'no healthy upstream endpoint', flag: 'UH' },
  circuit_open: { status: 503, message: 'circuit breaker is open', flag: 'UO' },
  overflow: { status: 503, message: 'upstream concurrency limit reached', flag: 'UO' },
  payload_too_large: { status: 413, message: 'request body too large', closes: true },
  rate_limited: { status: 429, message: 'rate limit exceeded' },
  unauthorized: { status: 401, message: 'missing or invalid bearer token' },
};

/** `{"error","message","requestId"}`; the request id is the only variable part. */
export function errorBody(code: ErrorCode, requestId: string, message?: string): string {
  return JSON.stringify({ error: code, message: message ?? ERRORS[code].message, requestId });
}

/**
 * The whole response as raw bytes, for answers written straight to a socket
 * before Node built a request object (parse errors, header overflow,
 * timeouts) or after it handed the socket over (refused upgrades). Such an
 * answer always closes the connection.
 */
export function rawErrorResponse(code: ErrorCode, requestId: string, extra: Record<string, string> = {}): string {
  const { status } = ERRORS[code];
  const body = errorBody(code, requestId);
  let extraLines = '';
  for (const name in extra) extraLines += `${name}: ${extra[name]}\r\n`;
  return (
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}\r\n` +
    'connection: close\r\n' +
    extraLines +
    'content-type: application/json\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    `x-tandem-error: ${code}\r\n` +
    `x-request-id: ${requestId}\r\n\r\n` +
    body
  );
}
