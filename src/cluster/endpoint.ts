import { Pool } from 'undici';
import type { ClusterConfig, EndpointConfig } from '../config/types.js';

/** undici subtracts this from a server's keep-alive hint, so we stop reusing a socket before the server closes it */
const KEEP_ALIVE_THRESHOLD_MS = 1000;

/** One upstream host:port with its own connection pool and the state the load balancers read. */
export class Endpoint {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  readonly key: string;
  readonly origin: string;
  readonly pool: Pool;
  activeRequests = 0;
  healthy = true;
  ejected = false;

  constructor(endpoint: EndpointConfig, cluster: Pick<ClusterConfig, 'connectTimeout' | 'pool'>) {
    this.address = endpoint.address;
    this.port = endpoint.port;
    this.weight = endpoint.weight;
    const bare = endpoint.address.includes(':') && !endpoint.address.startsWith('[');
    const host = bare ? `[${endpoint.address}]` : endpoint.address;
    this.key = `${host}:${endpoint.port}`;
    this.origin = `http://${this.key}`;
    this.pool = new Pool(this.origin, {
      connections: cluster.pool.connections,
      keepAliveTimeout: cluster.pool.keepAliveTimeout,
      keepAliveMaxTimeout: cluster.pool.keepAliveTimeout,
      keepAliveTimeoutThreshold: KEEP_ALIVE_THRESHOLD_MS,
      pipelining: 1,
      connect: { timeout: cluster.connectTimeout },
      // The proxy runs its own timers: undici's may fire up to ~1s late.
      headersTimeout: 0,
      bodyTimeout: 0,
      allowH2: false,
    });
  }

  get available(): boolean {
    return this.healthy && !this.ejected;
  }

  begin(): void {
    this.activeRequests++;
  }

  end(): void {
    // A negative count would make least_request favour this endpoint forever.
    if (this.activeRequests > 0) this.activeRequests--;
  }

  /** Waits for in-flight requests, then closes the sockets. */
  close(): Promise<void> {
    return this.pool.close();
  }

  /** Aborts in-flight requests and closes the sockets now. */
  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}
