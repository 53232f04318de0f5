import type { ClusterConfig } from '../config/types.js';
import { Endpoint } from './endpoint.js';
import { createLoadBalancer, type LoadBalancer, type PickContext } from './lb/index.js';

export type { PickContext } from './lb/index.js';

/** A named group of endpoints and the load balancer that chooses among them. */
export class Cluster {
  readonly name: string;
  readonly endpoints: readonly Endpoint[];
  private readonly balancer: LoadBalancer;

  constructor(readonly config: ClusterConfig) {
    this.name = config.name;
    this.endpoints = config.endpoints.map((endpoint) => new Endpoint(endpoint, config));
    this.balancer = createLoadBalancer(config, this.endpoints);
  }

  /**
   * The endpoint for the next try. A retry passes the endpoint it already
   * tried as `exclude` and goes elsewhere when another available endpoint
   * exists. undefined when every endpoint is unhealthy or ejected.
   */
  pick(ctx: PickContext, exclude?: Endpoint): Endpoint | undefined {
    return this.balancer.pick(ctx, exclude);
  }

  get activeRequests(): number {
    let total = 0;
    for (const endpoint of this.endpoints) total += endpoint.activeRequests;
    return total;
  }

  /** Lets in-flight requests finish, then closes every connection. */
  async close(): Promise<void> {
    await Promise.all(this.endpoints.map((endpoint) => endpoint.close()));
  }

  /** Aborts in-flight requests and closes every connection now. */
  async destroy(): Promise<void> {
    await Promise.all(this.endpoints.map((endpoint) => endpoint.destroy()));
  }
}
