import type { Endpoint } from '../endpoint.js';
import { TwoChoicesBalancer } from './two-choices.js';

/** Two choices, the one with fewer in-flight requests per unit of weight. */
export class LeastRequestBalancer extends TwoChoicesBalancer {
  protected cheaper(a: Endpoint, b: Endpoint): boolean {
    return a.activeRequests / a.weight < b.activeRequests / b.weight;
  }
}
