// A request's place among a cluster's requests: the concurrency limits
// (maxRequests, maxPendingRequests) and the error-rate breaker let it in or
// refuse it, and it leaves with its verdict for the breaker. Forwarded
// requests and WebSocket tunnels take and give back their place the same way.

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
 * Gives the place back, with the breaker's verdict on the request: false a
 * failure, null nothing learnt (the client left before any answer), or
 * undefined when the verdict was given earlier (a tunnel, on its 101).
 */
export function leaveCluster(c: ClusterRuntime, verdict: boolean | null | undefined): void {
  c.limits.release();
  if (verdict !== undefined) c.breaker?.record(verdict);
}
