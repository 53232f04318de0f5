import type { ClusterConfig } from '../../config/types.js';
import type { Endpoint } from '../endpoint.js';
import { LeastRequestBalancer } from './least-request.js';
import { PeakEwmaBalancer } from './peak-ewma.js';
import { RandomBalancer } from './random.js';
import { RingHashBalancer } from './ring-hash.js';
import { RoundRobinBalancer } from './round-robin.js';
import type { LoadBalancer } from './types.js';

export type { LoadBalancer, PickContext } from './types.js';

export function createLoadBalancer(config: ClusterConfig, endpoints: readonly Endpoint[]): LoadBalancer {
  switch (config.loadBalancing) {
    case 'round_robin':
      return new RoundRobinBalancer(endpoints);
    case 'least_request':
      return new LeastRequestBalancer(endpoints);
    case 'random':
      return new RandomBalancer(endpoints);
    case 'ring_hash':
      return new RingHashBalancer(endpoints, config.hashOn);
    case 'peak_ewma':
      return new PeakEwmaBalancer(endpoints);
  }
}
