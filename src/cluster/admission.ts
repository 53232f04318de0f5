// A request's place among a cluster's requests: the concurrency limits
// (maxRequests, maxPendingRequests) and the error-rate breaker let it in or
// refuse it, and it leaves with its verdict for the breaker. Forwarded
// requests and WebSocket tunnels take and give back their place the same way.

import { CLIENT_CLOSED, type Flag } from '../proxy/exchange.js';
import { isGrpcFailure } from '../proxy/grpc.js';
import type { ClusterRuntime } from '../snapshot-types.js';

/** Takes a place for one request, or refuses it (503 `overflow`, `circuit_open`) and counts the refusal. */
export function enterCluster(c: ClusterRuntime): 'overflow' | 'circuit_open' | null {
  if (!c.limits.admit()) {
    c.metrics.rejected('overflow');
    return 'overflow';
  }
  if (c.breaker !== null && !c.breaker.allow()) {
    c.limits.release();
    c.metrics.rejected('open');
    return 'circuit_open';
  }
  return null;
}

/**
 * Gives the place back, with the breaker's verdict on the request
 * (breakerVerdict), or undefined when it was given earlier (a tunnel, on
 * its 101).
 */
export function leaveCluster(c: ClusterRuntime, verdict: boolean | null | undefined): void {
  c.limits.release();
  if (verdict !== undefined) c.breaker?.record(verdict);
}

/**
 * The error-rate breaker's verdict on a request that ended with `status`
 * (CLIENT_CLOSED when the client left before any answer), for forwarded
 * requests and WebSocket upgrades alike: a 5xx (the upstream's or tandem's
 * own), a gRPC failure status (`grpcStatus`, from the answer's headers or
 * trailers) or an answer cut mid-body (UR, UT) is a failure. No verdict from
 * a client that left first, nor from no_healthy_upstream (UH): no endpoint
 * was there to take the request, which says nothing of the upstream's error
 * rate (docs/resilience.md).
 */
export function breakerVerdict(status: number, flags: readonly Flag[] | null, grpcStatus: number | null = null): boolean | null {
  if (status === CLIENT_CLOSED) return null;
  if (status >= 500 || isGrpcFailure(grpcStatus)) return flags !== null && flags.includes('UH') ? null : false;
  return flags === null || !(flags.includes('UR') || flags.includes('UT'));
}
