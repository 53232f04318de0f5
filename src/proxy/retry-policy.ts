// The retry rules of CONTRACT §4, compiled once per route so a decision
// per failed try is a few field reads.

import type { GrpcRetryOn, RetryConfig } from '../config/types.js';
import type { Failure } from './attempt.js';
import { GRPC_CANCELLED, GRPC_DEADLINE_EXCEEDED, GRPC_INTERNAL, GRPC_RESOURCE_EXHAUSTED, GRPC_UNAVAILABLE } from './grpc.js';

export interface RetryPolicy {
  /** retries after the first try */
  readonly attempts: number;
  readonly perTryTimeout: number;
  readonly connectFailure: boolean;
  readonly reset: boolean;
  readonly any5xx: boolean;
  readonly gatewayError: boolean;
  readonly statusCodes: ReadonlySet<number>;
  readonly nonIdempotent: boolean;
  readonly backoffBase: number;
  readonly backoffMax: number;
  /** request bodies up to this size are kept to be sent again; 0 = never */
  readonly bufferLimit: number;
  /** true when some response status can be retried: only then is a status looked at */
  readonly onStatus: boolean;
  /** the grpc-status values of a trailers-only answer to a gRPC request that are retried, whatever the method */
  readonly grpcStatuses: ReadonlySet<number>;
}

const GRPC_RETRY_ON: Readonly<Record<GrpcRetryOn, number>> = {
  cancelled: GRPC_CANCELLED,
  'deadline-exceeded': GRPC_DEADLINE_EXCEEDED,
  'resource-exhausted': GRPC_RESOURCE_EXHAUSTED,
  internal: GRPC_INTERNAL,
  unavailable: GRPC_UNAVAILABLE,
};

export function compileRetryPolicy(cfg: RetryConfig): RetryPolicy {
  const on = new Set(cfg.retryOn);
  const codes = on.has('retriable-status-codes') ? new Set(cfg.retriableStatusCodes) : new Set<number>();
  const grpcStatuses = new Set<number>();
  for (const condition of cfg.retryOn) if (Object.hasOwn(GRPC_RETRY_ON, condition)) grpcStatuses.add(GRPC_RETRY_ON[condition as GrpcRetryOn]);
  return {
    attempts: cfg.attempts,
    perTryTimeout: cfg.perTryTimeout,
    connectFailure: on.has('connect-failure'),
    reset: on.has('reset'),
    any5xx: on.has('5xx'),
    gatewayError: on.has('gateway-error'),
    statusCodes: codes,
    nonIdempotent: cfg.retryNonIdempotent,
    backoffBase: cfg.backoff.base,
    backoffMax: cfg.backoff.max,
    bufferLimit: cfg.bufferLimit,
    onStatus: on.has('5xx') || on.has('gateway-error') || codes.size > 0,
    grpcStatuses,
  };
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

/** Does the policy retry this status (ignoring the method and the count)? */
export function retriesOnStatus(p: RetryPolicy, status: number): boolean {
  if (status >= 500) {
    if (p.any5xx) return true;
    if (p.gatewayError && status >= 502 && status <= 504) return true;
  }
  return p.statusCodes.has(status);
}

/**
 * What a retry is asked for: a failed try, or a gRPC request's trailers-only
 * answer whose `grpc-status` is the `status`.
 */
export type RetryCause = Failure | 'grpc-status';

/**
 * Does the policy allow another try after this failure (ignoring the count)?
 * Only a connect failure is safe for any method: nothing reached the
 * application. A per-try timeout counts as a 504. A gRPC condition holds for
 * any method: gRPC calls are all POSTs, and the route opted in by naming it.
 */
export function allowsRetry(p: RetryPolicy, failure: RetryCause, status: number, idempotent: boolean): boolean {
  if (failure === 'connect-failure') return p.connectFailure;
  if (failure === 'grpc-status') return p.grpcStatuses.has(status);
  if (!idempotent && !p.nonIdempotent) return false;
  switch (failure) {
    case 'reset':
      return p.reset;
    case 'timeout':
      return retriesOnStatus(p, 504);
    case 'status':
      return retriesOnStatus(p, status);
  }
}

/**
 * Could a try that sent the request body be followed by another? Only then is
 * the body worth keeping. Idempotent methods always could: the free retry
 * after a reset (CONTRACT §3); so could a gRPC request on a route with gRPC
 * conditions.
 */
export function mayResendBody(p: RetryPolicy, idempotent: boolean, grpc: boolean): boolean {
  if (p.bufferLimit === 0) return false;
  if (idempotent || (grpc && p.grpcStatuses.size > 0)) return true;
  return p.nonIdempotent && p.attempts > 0 && (p.reset || p.onStatus);
}

/** Full jitter: retry n (from 1) waits a random time in [0, min(max, base * 2^(n-1))]. */
export function backoffDelay(p: RetryPolicy, n: number): number {
  const cap = Math.min(p.backoffMax, p.backoffBase * 2 ** (n - 1));
  return Math.random() * cap;
}

/**
 * Retry-After (RFC 9110 §10.2.3) in ms: delay-seconds or an HTTP-date; null
 * when absent or unreadable.
 */
export function retryAfterMs(value: string): number | null {
  const v = value.trim();
  if (/^\d{1,9}$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}
