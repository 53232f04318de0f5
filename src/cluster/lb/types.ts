import type { IncomingHttpHeaders } from 'node:http';
import type { Endpoint } from '../endpoint.js';

/** What a load balancer may read from the request. */
export interface PickContext {
  headers: IncomingHttpHeaders;
  clientIp: string;
}

export interface LoadBalancer {
  /**
   * The endpoint for the next try, skipping unavailable ones and avoiding
   * `exclude` while another available endpoint exists; undefined when none is available.
   */
  pick(ctx: PickContext, exclude?: Endpoint): Endpoint | undefined;
}

/** The answer when nothing but the excluded endpoint is left: trying it again beats failing. */
export function fallbackTo(exclude: Endpoint | undefined): Endpoint | undefined {
  return exclude !== undefined && exclude.available ? exclude : undefined;
}
