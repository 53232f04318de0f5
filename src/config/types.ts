// The validated configuration with every default applied. Durations are
// milliseconds and sizes are bytes from here on: units exist only in YAML.
// This is the one type the rest of tandem reads; the zod schema in
// schema.ts must produce exactly it.

export type AccessLogFormat = 'json' | 'text' | 'off';
export type LoadBalancing = 'round_robin' | 'least_request' | 'random' | 'ring_hash' | 'peak_ewma';
export type HttpRetryOn = 'connect-failure' | 'reset' | '5xx' | 'gateway-error' | 'retriable-status-codes';
/** match the grpc-status of a trailers-only answer to a gRPC request */
export type GrpcRetryOn = 'cancelled' | 'deadline-exceeded' | 'resource-exhausted' | 'internal' | 'unavailable';
export type RetryOn = HttpRetryOn | GrpcRetryOn;
/** HTTP/1.1, HTTP/2 negotiated by TLS ALPN, or HTTP/2 over plain TCP with prior knowledge */
export type ClusterProtocol = 'http1' | 'h2' | 'h2c';

export interface Config {
  /** worker threads serving the listeners (docs/workers.md); `auto`: the CPU quota, else the CPUs */
  workers: number | 'auto';
  admin: AdminConfig;
  accessLog: AccessLogConfig;
  drain: DrainConfig;
  /** absent: tracing off */
  tracing?: TracingConfig;
  listeners: ListenerConfig[];
  clusters: ClusterConfig[];
}

export interface AdminConfig {
  address: string;
  port: number;
}

export interface AccessLogConfig {
  format: AccessLogFormat;
  /** `stdout`, `stderr` or a file path */
  path: string;
}

export interface DrainConfig {
  delay: number;
  timeout: number;
}

export interface TracingConfig {
  otlp: OtlpConfig;
  serviceName: string;
  /** 0..1, for traces tandem starts */
  sampling: number;
}

export interface OtlpConfig {
  endpoint: string;
  headers: Record<string, string>;
  /** ms */
  timeout: number;
}

export interface ListenerLimits {
  maxHeaderBytes: number;
  /** 0 = unlimited */
  maxBodyBytes: number;
  maxHeaders: number;
  headersTimeout: number;
  requestTimeout: number;
  idleTimeout: number;
  /** request headers whose name has an underscore: 400, removed before forwarding, or passed on */
  headersWithUnderscores: 'reject' | 'drop' | 'allow';
}

/** http1: HTTP/1.0 and 1.1; h2c: HTTP/2 with prior knowledge, plaintext; h2: HTTP/2 over TLS by ALPN */
export type ListenerProtocol = 'http1' | 'h2c' | 'h2';

export interface ListenerConfig {
  name: string;
  address: string;
  port: number;
  protocols: ListenerProtocol[];
  http2: { maxConcurrentStreams: number };
  limits: ListenerLimits;
  /** absent: plain HTTP */
  tls?: ListenerTlsConfig;
  routes: RouteConfig[];
}

/** TLS termination; with `caFile` client certificates are verified against it (mTLS). */
export interface ListenerTlsConfig {
  certFile: string;
  keyFile: string;
  caFile?: string;
  /** refuse, at the handshake, clients without a certificate `caFile` verifies */
  requireClientCert: boolean;
}

export interface HeaderMatchConfig {
  /** as written; matching is case-insensitive on the name */
  name: string;
  exact?: string;
  prefix?: string;
  regex?: string;
  present?: boolean;
}

export interface RouteMatchConfig {
  /** exactly one of prefix | path | regex */
  prefix?: string;
  path?: string;
  regex?: string;
  host?: string;
  methods?: string[];
  headers?: HeaderMatchConfig[];
}

export interface RewriteConfig {
  prefix?: string;
  host?: string;
}

export interface WeightedClusterConfig {
  cluster: string;
  weight: number;
}

export interface DirectResponseConfig {
  status: number;
  body?: string;
}

export interface HeaderOpsConfig {
  set?: Record<string, string>;
  remove?: string[];
}

export interface BackoffConfig {
  base: number;
  max: number;
}

export interface RetryConfig {
  /** retries after the first try */
  attempts: number;
  perTryTimeout: number;
  retryOn: RetryOn[];
  retriableStatusCodes: number[];
  backoff: BackoffConfig;
  retryNonIdempotent: boolean;
  bufferLimit: number;
}

export interface RouteConfig {
  /** defaulted to `LISTENER.INDEX` */
  name: string;
  match: RouteMatchConfig;
  rewrite?: RewriteConfig;
  /** exactly one of cluster | weightedClusters | directResponse */
  cluster?: string;
  weightedClusters?: WeightedClusterConfig[];
  directResponse?: DirectResponseConfig;
  /** 0 = none */
  timeout: number;
  /** cap on a gRPC request's grpc-timeout, defaulted to `timeout`; 0 = no cap */
  maxGrpcTimeout: number;
  /** ms without a byte either way; 0 = off */
  idleTimeout: number;
  retries: RetryConfig;
  requestHeaders?: HeaderOpsConfig;
  responseHeaders?: HeaderOpsConfig;
  /** absent: not limited */
  rateLimit?: RateLimitConfig;
  /** absent: no authentication */
  auth?: AuthConfig;
}

export interface AuthConfig {
  jwt: JwtAuthConfig;
}

/** A bearer JWT required on the route, verified against a JWKS (RS256, ES256, EdDSA). */
export interface JwtAuthConfig {
  issuer: string;
  /** the token's aud must name at least one */
  audiences: string[];
  /** exactly one of jwksFile | jwksUri */
  jwksFile?: string;
  jwksUri?: string;
  /** claim name -> request header name (lower-cased) */
  forwardClaims: Record<string, string>;
  /** ms allowed between tandem's clock and the issuer's; defaulted to 30 s */
  clockSkew: number;
}

/** What a route's token buckets are keyed on: one bucket per client address, per value of a header, or one for the route. */
export type RateLimitKey = 'clientIp' | 'route' | `header:${string}`;

/** A local token bucket per key: holds `burst` tokens, starts full, refills continuously at `requestsPerSecond`. */
export interface RateLimitConfig {
  requestsPerSecond: number;
  /** defaulted to requestsPerSecond rounded up */
  burst: number;
  /** header names are lower-cased */
  key: RateLimitKey;
}

export interface EndpointConfig {
  address: string;
  port: number;
  weight: number;
}

export interface HashOnConfig {
  header?: string;
  cookie?: string;
  clientIp?: boolean;
}

export interface PoolConfig {
  connections: number;
  keepAliveTimeout: number;
}

/**
 * Two breakers in one block: the concurrency limits (always on) and the
 * error-rate breaker (on only when `errorThresholdPercentage` is set).
 */
export interface CircuitBreakerConfig {
  /** concurrent requests to the cluster; over it -> 503 overflow */
  maxRequests: number;
  /** requests waiting for a connection; over it -> 503 overflow */
  maxPendingRequests: number;
  /** concurrent retries in flight; at it a retry is skipped */
  maxRetries: number;
  errorThresholdPercentage?: number;
  volumeThreshold: number;
  window: number;
  resetTimeout: number;
}

/**
 * Retries in flight as a share of the requests in flight (Envoy's
 * retry_budget), with `circuitBreaker.maxRetries` still a hard cap.
 */
export interface RetryBudgetConfig {
  /** retries in flight may be this percent of the requests in flight... */
  percent: number;
  /** ...or this many, whichever is more */
  minConcurrency: number;
}

export interface OutlierDetectionConfig {
  consecutive5xx: number;
  baseEjectionTime: number;
  maxEjectionPercent: number;
}

export interface HealthCheckConfig {
  /** exactly one of path | grpc */
  path?: string;
  grpc?: GrpcHealthCheckConfig;
  interval: number;
  timeout: number;
  healthyThreshold: number;
  unhealthyThreshold: number;
}

/** grpc.health.v1.Health/Check; SERVING is healthy */
export interface GrpcHealthCheckConfig {
  /** the service asked about; "" is the server as a whole */
  service: string;
}

export interface DnsConfig {
  /** resolved to every A and AAAA address it has */
  name: string;
  port: number;
  refreshInterval: number;
}

export interface ClusterConfig {
  name: string;
  /** exactly one of endpoints | dns in the file; empty here for a dns cluster, whose endpoints come and go at run time */
  endpoints: EndpointConfig[];
  dns?: DnsConfig;
  protocol: ClusterProtocol;
  loadBalancing: LoadBalancing;
  hashOn?: HashOnConfig;
  /** percent of endpoints healthy and not ejected below which all are balanced over; 0 = off */
  panicThreshold: number;
  connectTimeout: number;
  pool: PoolConfig;
  circuitBreaker: CircuitBreakerConfig;
  retryBudget: RetryBudgetConfig;
  outlierDetection?: OutlierDetectionConfig;
  healthCheck?: HealthCheckConfig;
  /** absent: plain HTTP to the endpoints */
  tls?: ClusterTlsConfig;
}

/** TLS origination; the endpoints' certificates are always verified. */
export interface ClusterTlsConfig {
  /** trusted CAs; the system's when absent */
  caFile?: string;
  /** client certificate for mTLS, with keyFile */
  certFile?: string;
  keyFile?: string;
  /** SNI and the name verified in the certificate; the endpoint's address when absent */
  serverName?: string;
}
