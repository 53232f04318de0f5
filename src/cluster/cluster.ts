import type { ClusterConfig, EndpointConfig } from '../config/types.js';
import { Endpoint, endpointKey } from './endpoint.js';
import { createLoadBalancer, type LoadBalancer, type PickContext } from './lb/index.js';
import { PanicThreshold } from './panic.js';

export type { PickContext } from './lb/index.js';

/** What setEndpoints changed, so the cluster's watchers can follow. */
export interface EndpointChange {
  readonly added: readonly Endpoint[];
  readonly removed: readonly Endpoint[];
}

/** A named group of endpoints and the load balancer that chooses among them. */
export class Cluster {
  readonly name: string;
  private current: readonly Endpoint[];
  private balancer: LoadBalancer;
  /** endpoints that left the list and close once their in-flight requests are done */
  private readonly retiring = new Map<Endpoint, Promise<void>>();
  private readonly panic: PanicThreshold | null;

  /** `onPanic` hears the cluster cross its panic threshold, either way. */
  constructor(
    readonly config: ClusterConfig,
    onPanic: (panicking: boolean) => void = () => {},
  ) {
    this.name = config.name;
    this.panic = config.panicThreshold > 0 ? new PanicThreshold(config.panicThreshold, onPanic) : null;
    this.current = config.endpoints.map((endpoint) => new Endpoint(endpoint, config, this.panic));
    this.panic?.follow(this.current);
    this.balancer = createLoadBalancer(config, this.current);
  }

  /** Below the panic threshold: balancing over every endpoint, health and ejection ignored. */
  get panicking(): boolean {
    return this.panic?.active ?? false;
  }

  get endpoints(): readonly Endpoint[] {
    return this.current;
  }

  /**
   * Replaces the endpoint list (DNS discovery). Endpoints are matched by
   * address:port: one that stays keeps its object, so its pool, in-flight
   * count and health and ejection flags carry over; one that leaves is out of
   * rotation at once and its pool closes once its in-flight requests finish.
   * The new load balancer takes over in one assignment, so a pick sees
   * either the old list or the new one, never a mix.
   */
  setEndpoints(configs: readonly EndpointConfig[]): EndpointChange {
    const before = new Map(this.current.map((e) => [e.key, e]));
    const next: Endpoint[] = [];
    const added: Endpoint[] = [];
    const seen = new Set<string>();
    for (const c of configs) {
      const key = endpointKey(c.address, c.port);
      if (seen.has(key)) continue;
      seen.add(key);
      let endpoint = before.get(key);
      if (endpoint === undefined) {
        endpoint = new Endpoint(c, this.config, this.panic);
        added.push(endpoint);
      }
      before.delete(key);
      next.push(endpoint);
    }
    const removed = [...before.values()];
    this.current = next;
    this.panic?.follow(next);
    this.balancer = createLoadBalancer(this.config, next);
    for (const endpoint of removed) this.retire(endpoint);
    return { added, removed };
  }

  /**
   * The endpoint for the next try. A retry passes the endpoint it already
   * tried as `exclude` and goes elsewhere when another available endpoint
   * exists. undefined when every endpoint is unhealthy or ejected and the
   * panic threshold (if any) does not make them available.
   */
  pick(ctx: PickContext, exclude?: Endpoint): Endpoint | undefined {
    return this.balancer.pick(ctx, exclude);
  }

  get activeRequests(): number {
    let total = 0;
    for (const endpoint of this.current) total += endpoint.activeRequests;
    for (const endpoint of this.retiring.keys()) total += endpoint.activeRequests;
    return total;
  }

  /** Lets in-flight requests finish, then closes every connection. */
  async close(): Promise<void> {
    await Promise.all([...this.current.map((endpoint) => endpoint.close()), ...this.retiring.values()]);
  }

  /** Aborts in-flight requests and closes every connection now. */
  async destroy(): Promise<void> {
    await Promise.all([...this.current, ...this.retiring.keys()].map((endpoint) => endpoint.destroy()));
  }

  private retire(endpoint: Endpoint): void {
    const closed = endpoint
      .close()
      // A pool that fails to close has nothing left to serve: forget it either way.
      .catch(() => {})
      .finally(() => this.retiring.delete(endpoint));
    this.retiring.set(endpoint, closed);
  }
}
