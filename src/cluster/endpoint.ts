import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { Client as UndiciClient, Dispatcher } from 'undici';
import { Client, Pool } from '../undici.js';
import { ReuseTrackingClient } from './reuse-tracking-client.js';
import type { ClusterConfig, ClusterProtocol, ClusterTlsConfig, EndpointConfig } from '../config/types.js';
import { protocolOptions, type ProtocolOptions } from './protocol.js';
import type { PanicThreshold } from './panic.js';
import { PeakEwma } from './peak-ewma.js';

/** undici subtracts this from a server's keep-alive hint, so we stop reusing a socket before the server closes it */
const KEEP_ALIVE_THRESHOLD_MS = 1000;

/** `host:port`, IPv6 addresses in brackets: an endpoint's identity within its cluster. */
export function endpointKey(address: string, port: number): string {
  const bare = address.includes(':') && !address.startsWith('[');
  return `${bare ? `[${address}]` : address}:${port}`;
}

/** TLS options of every connection to a cluster's endpoints: verification is never off. */
export function upstreamTlsOptions(cfg: ClusterTlsConfig): ConnectionOptions {
  const read = (file: string | undefined): Buffer | undefined => (file === undefined ? undefined : readFileSync(file));
  return {
    ca: read(cfg.caFile),
    cert: read(cfg.certFile),
    key: read(cfg.keyFile),
    servername: cfg.serverName,
    rejectUnauthorized: true,
  };
}

/** One upstream host:port with its own connection pool and the state the load balancers read. */
export class Endpoint {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  readonly key: string;
  readonly origin: string;
  /** the cluster's TLS origination options, for every client of this endpoint (health checks too) */
  readonly tls: ConnectionOptions | undefined;
  /** the cluster's protocol, for every client of this endpoint (health checks too) */
  readonly protocol: ClusterProtocol;
  readonly pool: Pool;
  /** the pool's clients' options, for the one-off connections of free retries */
  private readonly clientOptions: UndiciClient.Options & ProtocolOptions;
  /** one-off connections still carrying their request */
  private readonly oneOff = new Set<Client>();
  activeRequests = 0;
  /**
   * Whether load balancers may pick it: healthy, not ejected and not
   * closing, or, while the cluster's panic threshold is crossed, not
   * closing. A field kept up to date when a flag changes, not a getter, so
   * that picks pay nothing for the panic threshold.
   */
  available = true;
  /** the try latencies of a peak_ewma cluster; null for the other policies, which then record nothing */
  readonly latency: PeakEwma | null;
  private isHealthy = true;
  private isEjected = false;
  /** set by close(): a closed pool refuses dispatches, so not even a retry's fallback (nor panic) may pick it */
  private closing = false;

  /** `panic` is the cluster's panic threshold, null when it is off. */
  constructor(
    endpoint: EndpointConfig,
    cluster: Pick<ClusterConfig, 'connectTimeout' | 'pool' | 'tls'> & Partial<Pick<ClusterConfig, 'loadBalancing' | 'protocol'>>,
    private readonly panic: PanicThreshold | null = null,
  ) {
    this.address = endpoint.address;
    this.port = endpoint.port;
    this.weight = endpoint.weight;
    this.key = endpointKey(endpoint.address, endpoint.port);
    this.tls = cluster.tls === undefined ? undefined : upstreamTlsOptions(cluster.tls);
    this.protocol = cluster.protocol ?? 'http1';
    this.origin = `${this.tls === undefined ? 'http' : 'https'}://${this.key}`;
    this.clientOptions = {
      keepAliveTimeout: cluster.pool.keepAliveTimeout,
      keepAliveMaxTimeout: cluster.pool.keepAliveTimeout,
      keepAliveTimeoutThreshold: KEEP_ALIVE_THRESHOLD_MS,
      // HTTP/1.1 only: on HTTP/2 the endpoint's stream limit applies
      pipelining: 1,
      ...protocolOptions(this.protocol, this.tls, cluster.connectTimeout),
      // The proxy runs its own timers: undici's may fire up to ~1s late.
      headersTimeout: 0,
      bodyTimeout: 0,
    };
    this.pool = new Pool(this.origin, {
      ...this.clientOptions,
      connections: cluster.pool.connections,
      factory: (origin, options) => new ReuseTrackingClient(origin, options),
    });
    this.latency = cluster.loadBalancing === 'peak_ewma' ? new PeakEwma() : null;
  }

  /**
   * Sends a request on a connection of its own, closed once the request is
   * done. For the free retry only: undici's Pool hands a request to its
   * first free client, which after an upstream restart holds another stale
   * connection. The connection is one over `pool.connections` while it lasts.
   */
  dispatchOnNewConnection(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): void {
    const client = new ReuseTrackingClient(this.origin, this.clientOptions);
    this.oneOff.add(client);
    client.dispatch(options, handler);
    client.close(() => this.oneOff.delete(client));
  }

  /** Active health checks' verdict. */
  get healthy(): boolean {
    return this.isHealthy;
  }

  set healthy(healthy: boolean) {
    if (healthy === this.isHealthy) return;
    this.isHealthy = healthy;
    this.flagsChanged();
  }

  /** Outlier detection's verdict. */
  get ejected(): boolean {
    return this.isEjected;
  }

  set ejected(ejected: boolean) {
    if (ejected === this.isEjected) return;
    this.isEjected = ejected;
    this.flagsChanged();
  }

  /** Healthy and not ejected: what the panic threshold counts. */
  get inRotation(): boolean {
    return this.isHealthy && !this.isEjected;
  }

  /** Recomputes `available`; `panicking` says whether the cluster is below its panic threshold. */
  refresh(panicking: boolean): void {
    this.available = !this.closing && (panicking || this.inRotation);
  }

  private flagsChanged(): void {
    if (this.panic === null) this.refresh(false);
    else this.panic.recount();
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
    this.closing = true;
    this.available = false;
    return this.pool.close();
  }

  /** Aborts in-flight requests and closes the sockets now. */
  destroy(): Promise<void> {
    for (const client of this.oneOff) void client.destroy();
    this.oneOff.clear();
    return this.pool.destroy();
  }
}
