// The shape of the YAML file (CONTRACT §2) and the defaults it omits.
// Relations between keys (exactly one of, references, duplicates) live in
// rules.ts, where they are checked even when a shape error elsewhere stops
// zod's own refinements.

import * as z from 'zod';
import type { Config, ListenerProtocol, RateLimitKey, RetryConfig, RetryOn } from './types.js';
import {
  DURATION_PATTERN,
  SIZE_PATTERN,
  parseDuration,
  parseSize,
  type UnitResult,
} from './units.js';
import { parseHostPort } from './host-port.js';

const RETRY_ON = [
  'connect-failure', 'reset', '5xx', 'gateway-error', 'retriable-status-codes',
  'cancelled', 'deadline-exceeded', 'resource-exhausted', 'internal', 'unavailable',
] as const satisfies readonly RetryOn[];
const DEFAULT_RETRY_ON: RetryOn[] = ['connect-failure'];
const RETRY_BLOCK_RETRY_ON: RetryOn[] = ['connect-failure', 'reset', 'gateway-error'];

const MS = { second: 1000 };
const DEFAULT_BACKOFF = { base: 25, max: 250 };
const KIB = 1024;

// A unit-bearing value goes through our own parser (better messages than a
// union of zod types); its JSON Schema is written by hand to match.
function quantity(parse: (v: unknown) => UnitResult, minimum: 0 | 1, meta: { description: string; pattern: string }) {
  return z
    .unknown()
    .transform((input, ctx) => {
      const r = parse(input);
      if (!r.ok) {
        ctx.issues.push({ code: 'custom', message: r.message, input });
        return z.NEVER;
      }
      if (r.value < minimum) {
        ctx.issues.push({ code: 'custom', message: 'must be greater than 0', input });
        return z.NEVER;
      }
      return r.value;
    })
    .meta({
      description: meta.description,
      anyOf: [
        { type: 'string', pattern: meta.pattern },
        { type: 'integer', minimum },
      ],
    });
}

const duration = (minimum: 0 | 1 = 0) =>
  quantity(parseDuration, minimum, {
    description: 'A duration: "250ms", "2s", "1m", "1h" or integer milliseconds.',
    pattern: DURATION_PATTERN,
  });

const size = (minimum: 0 | 1 = 0) =>
  quantity(parseSize, minimum, {
    description: 'A size: "512B", "64KiB", "1MiB", "1GiB" (or decimal KB, MB, GB) or integer bytes.',
    pattern: SIZE_PATTERN,
  });

const port = (minimum: 0 | 1) => z.int().min(minimum).max(65535);

const name = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, {
    error: 'names may use letters, digits, ".", "_" and "-", starting with a letter or digit',
  });

const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const headerName = z.string().regex(HTTP_TOKEN, { error: 'not a valid HTTP header name' });

const regex = z.string().superRefine((source, ctx) => {
  try {
    new RegExp(source);
  } catch (err) {
    // V8's message already reads "Invalid regular expression: /(/: Unterminated group".
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const absolutePath = z.string().startsWith('/', { error: 'must start with "/"' });

const hostPattern = z
  .string()
  .regex(/^(\*\.)?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$|^\[[0-9A-Fa-f:.]+\]$/, {
    error: 'must be a host name without port: exact ("api.internal") or a suffix wildcard ("*.example.com")',
  })
  // Host matching is case-insensitive; one case here spares every comparison later.
  .transform((host) => host.toLowerCase());

const method = z
  .string()
  .regex(HTTP_TOKEN, { error: 'not a valid HTTP method' })
  .transform((m) => m.toUpperCase());

// YAML turns `x-port: 8080` into a number; a header value is text either way.
const headerValue = z
  .union([z.string(), z.number(), z.boolean()], { error: 'header values must be text' })
  .transform(String);

const adminSchema = z.strictObject({
  address: z.string().min(1).default('127.0.0.1').meta({ description: 'Address the admin API binds; keep loopback unless probes or scrapes come over the Pod network.' }),
  port: port(0).default(9901).meta({ description: 'Port of the admin API (0 picks a free port).' }),
});

const accessLogSchema = z.strictObject({
  format: z.enum(['json', 'text', 'off']).default('json').meta({ description: 'json, text (one common-log-like line) or off.' }),
  path: z.string().min(1).default('stdout').meta({ description: 'stdout, stderr or a file path.' }),
});

const drainSchema = z.strictObject({
  delay: duration().default(0).meta({ description: 'How long listeners keep accepting after the drain starts (endpoint removal propagating).' }),
  timeout: duration().default(30 * MS.second).meta({ description: 'Then how long in-flight requests get to finish before tandem exits.' }),
});

const tracingSchema = z.strictObject({
  otlp: z
    .strictObject({
      endpoint: z
        .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
        .meta({ description: 'OTLP/HTTP traces URL of the collector (protobuf), e.g. http://127.0.0.1:4318/v1/traces.' }),
      headers: z.record(headerName, headerValue).default({}).meta({ description: 'Headers sent with every export (an API key, a tenant).' }),
      timeout: duration(1).default(10 * MS.second).meta({ description: 'Time an export may take; then it counts as failed and its spans as dropped.' }),
    })
    .meta({ description: 'Where spans are exported.' }),
  serviceName: z.string().min(1).default('tandem').meta({ description: 'The service.name resource attribute of tandem\'s spans.' }),
  sampling: z.number().min(0).max(1).default(1).meta({ description: 'Share of the traces tandem starts that are sampled (0 to 1); a valid incoming traceparent decides by its own flag.' }),
});

const limitsSchema = z.strictObject({
  maxHeaderBytes: size(1).default(60 * KIB).meta({ description: 'Largest request head; a larger one gets 431.' }),
  maxBodyBytes: size().default(0).meta({ description: 'Largest request body, 0 for unlimited; a larger one gets 413.' }),
  maxHeaders: z.int().min(1).default(100).meta({ description: 'Most request header lines; more get 431.' }),
  headersTimeout: duration(1).default(10 * MS.second).meta({ description: 'Time for the request head to arrive; then 408 and the connection closes.' }),
  requestTimeout: duration(1).default(60 * MS.second).meta({ description: 'Time for the whole request (head and body) to arrive; then 408 and the connection closes. Below headersTimeout it is the head\'s deadline too.' }),
  idleTimeout: duration(1).default(60 * MS.second).meta({ description: 'How long an idle keep-alive client connection stays open.' }),
  headersWithUnderscores: z
    .enum(['reject', 'drop', 'allow'])
    .default('reject')
    .meta({
      description:
        'Request headers whose name contains an underscore (CGI-style servers read `x_user` and `x-user` as the same header, a way to smuggle past header rules): reject gets 400, drop removes them before forwarding, allow passes them on.',
    }),
});

const headerMatchSchema = z.strictObject({
  name: headerName.meta({ description: 'Header name (case-insensitive).' }),
  exact: z.string().optional().meta({ description: 'The value equals this.' }),
  prefix: z.string().optional().meta({ description: 'The value starts with this.' }),
  regex: regex.optional().meta({ description: 'The whole value matches this regular expression.' }),
  present: z.boolean().optional().meta({ description: 'true: the header is present; false: it is absent. A name alone means present.' }),
});

const matchSchema = z.strictObject({
  prefix: absolutePath.optional().meta({ description: 'Path prefix on whole segments: /api matches /api and /api/x, not /apix.' }),
  path: absolutePath.optional().meta({ description: 'Exact path.' }),
  regex: regex.optional().meta({ description: 'Regular expression the whole path must match.' }),
  host: hostPattern.optional().meta({ description: 'Host header without its port, case-insensitive: exact or "*.suffix".' }),
  methods: z.array(method).min(1).optional().meta({ description: 'Methods accepted; any method when absent.' }),
  headers: z.array(headerMatchSchema).min(1).optional().meta({ description: 'Header conditions, all of which must hold.' }),
});

const rewriteSchema = z.strictObject({
  prefix: absolutePath.optional().meta({ description: 'Replaces the matched prefix of the path.' }),
  host: z.string().min(1).optional().meta({ description: "Host header sent upstream; the client's Host is kept when absent." }),
});

const weightedClustersSchema = z
  .array(
    z.strictObject({
      cluster: z.string().min(1).meta({ description: 'Cluster name.' }),
      weight: z.int().min(0).meta({ description: 'Relative share of the requests; 0 sends none.' }),
    }),
  )
  .min(1)
  .refine((entries) => entries.some((e) => e.weight > 0), { error: 'at least one weight must be greater than 0' });

const directResponseSchema = z.strictObject({
  status: z.int().min(200).max(599).meta({ description: 'Status code of the answer.' }),
  body: z.string().optional().meta({ description: 'Body of the answer; empty when absent.' }),
});

const headerOpsSchema = z.strictObject({
  set: z.record(headerName, headerValue).optional().meta({ description: 'Headers to set, replacing any of the same name.' }),
  remove: z.array(headerName).optional().meta({ description: 'Names of headers to remove.' }),
});

const retriesSchema = z
  .strictObject({
    attempts: z.int().min(0).max(10).optional().meta({ description: 'Retries after the first try (2 tries more when absent).' }),
    perTryTimeout: duration().optional().meta({ description: "Timeout of each try; the route's timeout when absent." }),
    retryOn: z
      .array(z.enum(RETRY_ON))
      .min(1)
      .optional()
      .meta({
        description:
          'What a try may fail with to be retried; [connect-failure, reset, gateway-error] when absent. cancelled, deadline-exceeded, resource-exhausted, internal and unavailable match the grpc-status of a trailers-only answer to a gRPC request, whatever its method.',
      }),
    retriableStatusCodes: z
      .array(z.int().min(100).max(599))
      .optional()
      .meta({ description: 'Status codes retried under retriable-status-codes.' }),
    backoff: z
      .strictObject({
        base: duration().optional().meta({ description: 'Upper bound of the first wait (25ms when absent); doubles with each retry.' }),
        max: duration().optional().meta({ description: 'Cap on the upper bound of any wait (250ms when absent).' }),
      })
      .optional()
      .meta({ description: 'Exponential backoff with full jitter between tries.' }),
    retryNonIdempotent: z
      .boolean()
      .optional()
      .meta({ description: 'Also retry POST, PATCH and other non-idempotent methods on reset, 5xx and status codes (false when absent).' }),
    bufferLimit: size()
      .optional()
      .meta({ description: 'Request bodies up to this size are kept for retries; larger ones stream and are never retried (64KiB when absent).' }),
  })
  .superRefine((r, ctx) => {
    const base = r.backoff?.base ?? DEFAULT_BACKOFF.base;
    const max = r.backoff?.max ?? DEFAULT_BACKOFF.max;
    if (base > max) {
      const at = r.backoff?.max === undefined ? 'base' : 'max';
      ctx.addIssue({ code: 'custom', path: ['backoff', at], message: `backoff.base (${base}ms) exceeds backoff.max (${max}ms)` });
    }
    const codes = r.retriableStatusCodes ?? [];
    const byCode = r.retryOn?.includes('retriable-status-codes') ?? false;
    if (byCode && codes.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['retryOn'], message: 'retriable-status-codes needs a non-empty retriableStatusCodes' });
    }
    if (!byCode && codes.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['retriableStatusCodes'],
        message: 'has no effect unless retryOn includes retriable-status-codes',
      });
    }
  });

type RetriesInput = z.output<typeof retriesSchema>;

const filePath = z.string().min(1);

const rateLimitKey = z
  .string()
  .regex(/^(clientIp|route|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/, { error: 'must be clientIp, route or "header:NAME"' })
  // Node lower-cases request header names; the key must name the same header.
  .transform((key) => (key.startsWith('header:') ? key.toLowerCase() : key) as RateLimitKey);

const rateLimitSchema = z
  .strictObject({
    requestsPerSecond: z.number().gt(0).meta({ description: 'Tokens added to each bucket per second, continuously.' }),
    burst: z
      .int()
      .min(1)
      .optional()
      .meta({ description: 'Tokens a bucket holds, and starts with: the requests allowed at once (requestsPerSecond rounded up when absent).' }),
    key: rateLimitKey
      .default('clientIp')
      .meta({ description: 'One bucket per clientIp, per value of "header:NAME" (one shared bucket when the header is absent), or one for the route.' }),
  })
  .transform(({ burst, ...r }) => ({ ...r, burst: burst ?? Math.ceil(r.requestsPerSecond) }));

// Headers tandem owns or that carry the connection itself: a claim may not be
// forwarded under these names (the Authorization header goes upstream as sent).
const UNFORWARDABLE = new Set([
  'authorization', 'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'proxy-connection',
  'te', 'trailer', 'upgrade', 'expect', 'proxy-authorization', 'proxy-authenticate', 'x-request-id', 'x-forwarded-client-cert',
]);

const claimHeader = headerName
  .transform((h) => h.toLowerCase())
  .refine((h) => !UNFORWARDABLE.has(h) && !h.startsWith('x-tandem-'), { error: 'tandem sets or protects this header itself' });

// exactly one of jwksFile | jwksUri is checked in rules.ts
const jwtSchema = z.strictObject({
  issuer: z.string().min(1).meta({ description: 'The iss every token must carry.' }),
  audiences: z.array(z.string().min(1)).min(1).meta({ description: 'The token\'s aud must name at least one of these.' }),
  jwksFile: filePath.optional().meta({ description: 'JWKS file with the verification keys, read at load and reload (exactly one of jwksFile | jwksUri).' }),
  jwksUri: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .optional()
    .meta({ description: 'URL of the JWKS, fetched at load, refreshed every 10 minutes and when a token names an unknown key; the last good set stays in use when a fetch fails.' }),
  forwardClaims: z
    .record(z.string().min(1), claimHeader)
    .default({})
    .meta({ description: 'Claims copied to request headers ({ claim: header-name }); the client\'s headers of those names are removed first.' }),
  clockSkew: duration().default(30 * MS.second).meta({ description: 'Leeway on exp and nbf for clocks that disagree.' }),
});

const authSchema = z.strictObject({
  jwt: jwtSchema.meta({ description: 'A bearer JWT (RS256, ES256 or EdDSA) is required: a missing or invalid one gets 401 unauthorized.' }),
});

// CONTRACT §4: no block retries once on connect failure; a block without
// retryOn/attempts gets the broader defaults.
function resolveRetries(r: RetriesInput | undefined, routeTimeout: number): RetryConfig {
  return {
    attempts: r?.attempts ?? (r ? 2 : 1),
    perTryTimeout: r?.perTryTimeout ?? routeTimeout,
    retryOn: r?.retryOn ?? (r ? RETRY_BLOCK_RETRY_ON : DEFAULT_RETRY_ON),
    retriableStatusCodes: r?.retriableStatusCodes ?? [],
    backoff: { base: r?.backoff?.base ?? DEFAULT_BACKOFF.base, max: r?.backoff?.max ?? DEFAULT_BACKOFF.max },
    retryNonIdempotent: r?.retryNonIdempotent ?? false,
    bufferLimit: r?.bufferLimit ?? 64 * KIB,
  };
}

const routeSchema = z
  .strictObject({
    name: name.optional().meta({ description: 'Route name in metrics and logs; LISTENER.INDEX when absent.' }),
    match: matchSchema.meta({ description: 'What a request must match: exactly one of prefix, path, regex, plus optional host, methods, headers.' }),
    rewrite: rewriteSchema.optional().meta({ description: 'Changes to the request before it goes upstream.' }),
    cluster: z.string().min(1).optional().meta({ description: 'Cluster that serves the route (one of cluster, weightedClusters, directResponse).' }),
    weightedClusters: weightedClustersSchema.optional().meta({ description: 'Clusters that share the traffic by weight.' }),
    directResponse: directResponseSchema.optional().meta({ description: 'An answer from tandem itself, without an upstream.' }),
    timeout: duration()
      .default(15 * MS.second)
      .meta({ description: "From the end of the client's request to the end of the response, all tries included; 0 for none." }),
    maxGrpcTimeout: duration()
      .optional()
      .meta({ description: "Cap on the grpc-timeout of a gRPC request, which replaces the route timeout for it; the route's timeout when absent, 0 for no cap." }),
    idleTimeout: duration()
      .default(0)
      .meta({ description: 'Longest time without a byte either way (request body, response head or body) once the request is forwarded; then 504 before the response head, the client connection aborted after it. For streams (SSE, gRPC) that outlive any total timeout; 0 = off.' }),
    retries: retriesSchema.optional().meta({ description: 'Retry policy; a route without one retries once on connect-failure.' }),
    requestHeaders: headerOpsSchema.optional().meta({ description: 'Headers set or removed on the request sent upstream.' }),
    responseHeaders: headerOpsSchema.optional().meta({ description: 'Headers set or removed on the response sent to the client.' }),
    rateLimit: rateLimitSchema.optional().meta({ description: 'A local token bucket per key (per tandem process); an empty one answers 429 rate_limited.' }),
    auth: authSchema.optional().meta({ description: 'Authentication required on the route.' }),
  })
  .transform(({ retries, maxGrpcTimeout, ...route }) => ({
    ...route,
    maxGrpcTimeout: maxGrpcTimeout ?? route.timeout,
    retries: resolveRetries(retries, route.timeout),
  }));

const listenerTlsSchema = z
  .strictObject({
    certFile: filePath.meta({ description: 'PEM certificate chain presented to clients; re-read when the file changes.' }),
    keyFile: filePath.meta({ description: 'PEM private key of certFile; re-read when the file changes.' }),
    caFile: filePath.optional().meta({ description: 'PEM CA certificates that verify client certificates (mTLS); verified subjects go upstream in x-forwarded-client-cert.' }),
    requireClientCert: z
      .boolean()
      .default(false)
      .meta({ description: 'Refuse, at the handshake, clients without a certificate caFile verifies.' }),
  })
  .superRefine((tls, ctx) => {
    if (tls.requireClientCert && tls.caFile === undefined) {
      ctx.addIssue({ code: 'custom', path: ['requireClientCert'], message: 'requireClientCert needs caFile to verify client certificates' });
    }
  });

const clusterTlsSchema = z
  .strictObject({
    caFile: filePath.optional().meta({ description: "PEM CA certificates that verify the endpoints' certificates; the system's CAs when absent." }),
    certFile: filePath.optional().meta({ description: 'PEM client certificate presented to the endpoints (mTLS), with keyFile.' }),
    keyFile: filePath.optional().meta({ description: 'PEM private key of certFile.' }),
    serverName: z.string().min(1).optional().meta({ description: "Name sent in SNI and verified in the endpoints' certificates; the endpoint's address when absent." }),
  })
  .superRefine((tls, ctx) => {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      const missing = tls.certFile === undefined ? 'certFile' : 'keyFile';
      ctx.addIssue({ code: 'custom', path: [], message: `certFile and keyFile go together: ${missing} is missing` });
    }
  });

const http2Schema = z.strictObject({
  maxConcurrentStreams: z
    .int()
    .min(1)
    .max(2 ** 31 - 1)
    .default(100)
    .meta({ description: 'Streams a client may have open at once on one connection, announced in SETTINGS; streams over it are refused (RST_STREAM REFUSED_STREAM).' }),
});

const listenerSchema = z
  .strictObject({
    name: name.optional().meta({ description: 'Listener name in metrics and logs; listener-INDEX when absent.' }),
    address: z.string().min(1).default('0.0.0.0').meta({ description: 'Address to bind.' }),
    port: port(0).meta({ description: 'Port to bind (0 picks a free port).' }),
    protocols: z
      .array(z.enum(['http1', 'h2c', 'h2']))
      .min(1)
      .optional()
      .meta({
        description:
          'Protocols served: plaintext http1 and h2c (HTTP/2 with prior knowledge), told apart per connection by its first bytes; with tls, http1 and h2, offered by ALPN. Both of the listener\'s kind when absent.',
      }),
    http2: http2Schema.prefault({}).meta({ description: 'HTTP/2 connection settings.' }),
    limits: limitsSchema.prefault({}).meta({ description: 'What a client may send, and how slowly; on HTTP/2 per stream, except idleTimeout (per connection).' }),
    tls: listenerTlsSchema.optional().meta({ description: 'Terminate TLS (and mTLS) on this listener; plain HTTP when absent.' }),
    routes: z.array(routeSchema).min(1).meta({ description: 'Routes in order; the first match wins.' }),
  })
  .superRefine((l, ctx) => {
    const wrong = l.tls === undefined ? 'h2' : 'h2c';
    l.protocols?.forEach((p, i) => {
      if (p === wrong) {
        const hint = l.tls === undefined ? 'h2 needs tls on the listener; plaintext HTTP/2 is h2c' : 'a tls listener offers h2, not h2c';
        ctx.addIssue({ code: 'custom', path: ['protocols', i], message: hint });
      } else if (l.protocols!.indexOf(p) !== i) {
        ctx.addIssue({ code: 'custom', path: ['protocols', i], message: `${p} is listed twice` });
      }
    });
  })
  .transform((l) => ({
    ...l,
    protocols: l.protocols ?? (l.tls === undefined ? (['http1', 'h2c'] as ListenerProtocol[]) : (['http1', 'h2'] as ListenerProtocol[])),
  }));

const endpointSchema = z.union(
  [
    z.string().transform((text, ctx) => {
      const r = parseHostPort(text);
      if (!r.ok) {
        ctx.issues.push({ code: 'custom', message: r.message, input: text });
        return z.NEVER;
      }
      return { address: r.address, port: r.port, weight: 1 };
    }),
    z.strictObject({
      address: z.string().min(1).meta({ description: 'Host name or IP address.' }),
      port: port(1).meta({ description: 'Port.' }),
      weight: z.int().min(1).default(1).meta({ description: 'Relative weight in load balancing.' }),
    }),
  ],
  { error: 'an endpoint is "host:port" or { address, port, weight }' },
);

const hashOnSchema = z.strictObject({
  header: headerName.optional().meta({ description: 'Hash on this request header.' }),
  cookie: z.string().min(1).optional().meta({ description: 'Hash on this cookie.' }),
  clientIp: z.literal(true).optional().meta({ description: "Hash on the client's address." }),
});

const circuitBreakerSchema = z.strictObject({
  maxRequests: z.int().min(1).default(1024).meta({ description: 'Concurrent requests to the cluster; over it 503 overflow.' }),
  maxPendingRequests: z
    .int()
    .min(1)
    .default(1024)
    .meta({ description: 'Tries waiting for a connection; over it new requests get 503 overflow.' }),
  maxRetries: z.int().min(0).default(3).meta({ description: 'Concurrent retries in flight; at the limit a retry is skipped.' }),
  errorThresholdPercentage: z
    .number()
    .gt(0)
    .max(100)
    .optional()
    .meta({ description: 'Failed share (percent) over which the error-rate breaker opens; no such breaker when absent.' }),
  volumeThreshold: z.int().min(1).default(20).meta({ description: 'Requests that must finish within window before the breaker may open.' }),
  window: duration(1).default(10 * MS.second).meta({ description: 'Rolling window of the error rate.' }),
  resetTimeout: duration(1).default(30 * MS.second).meta({ description: 'Time open before one half-open trial request.' }),
});

const retryBudgetSchema = z.strictObject({
  percent: z
    .number()
    .min(0)
    .max(100)
    .default(20)
    .meta({ description: 'Retries in flight may be this percent of the requests in flight (retrying ones included), or minConcurrency, whichever is more.' }),
  minConcurrency: z.int().min(0).default(3).meta({ description: 'Retries in flight the budget always allows.' }),
});

const outlierDetectionSchema = z.strictObject({
  consecutive5xx: z.int().min(1).default(5).meta({ description: 'Failures in a row (5xx, connect failure, reset) that eject an endpoint.' }),
  baseEjectionTime: duration(1).default(30 * MS.second).meta({ description: 'First ejection time; it grows with each ejection of the same endpoint.' }),
  maxEjectionPercent: z.int().min(0).max(100).default(50).meta({ description: 'Most endpoints ejected at once, in percent (at least one).' }),
});

const healthCheckSchema = z.strictObject({
  path: z
    .string()
    .startsWith('/', { error: 'must start with "/"' })
    .optional()
    .meta({ description: 'Path probed with GET; a 2xx answer is a success (exactly one of path | grpc).' }),
  grpc: z
    .strictObject({
      service: z.string().default('').meta({ description: 'Service name asked about; "" asks about the server as a whole.' }),
    })
    .optional()
    .meta({
      description:
        'Probe with the gRPC health protocol (grpc.health.v1.Health/Check) instead of a GET: healthy only on HTTP 200, grpc-status 0 and SERVING. Needs protocol h2 or h2c.',
    }),
  interval: duration(1).default(5 * MS.second).meta({ description: 'Time between probes of an endpoint.' }),
  timeout: duration(1).default(MS.second).meta({ description: 'Time a probe may take.' }),
  healthyThreshold: z.int().min(1).default(2).meta({ description: 'Successes in a row that mark an unhealthy endpoint healthy.' }),
  unhealthyThreshold: z.int().min(1).default(3).meta({ description: 'Failures in a row that mark a healthy endpoint unhealthy.' }),
});

// RFC 1123 labels of at most 63 characters (underscores allowed, as in SRV-style names), 253 in all, optional final dot.
const DNS_LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const DNS_NAME = new RegExp(`^(?=.{1,253}\\.?$)${DNS_LABEL}(?:\\.${DNS_LABEL})*\\.?$`);

const dnsSchema = z.strictObject({
  name: z
    .string()
    .regex(DNS_NAME, { error: 'must be a DNS name, e.g. "app.default.svc.cluster.local"' })
    .meta({ description: 'Name resolved to every A and AAAA address it has (a headless Service: one per Pod).' }),
  port: port(1).meta({ description: 'Port of every resolved address.' }),
  refreshInterval: duration(1).default(5 * MS.second).meta({ description: 'Time between the end of one resolution and the next.' }),
});

// `endpoints` and `dns` are exclusive (rules.ts); a dns cluster starts with no endpoints.
const clusterSchema = z
  .strictObject({
    name: name.meta({ description: 'Cluster name that routes refer to.' }),
    endpoints: z.array(endpointSchema).min(1).optional().meta({ description: 'Fixed endpoints: "host:port" or { address, port, weight }; exactly one of endpoints | dns.' }),
    dns: dnsSchema.optional().meta({ description: 'Endpoints discovered and refreshed from a DNS name; exactly one of endpoints | dns.' }),
    protocol: z
      .enum(['http1', 'h2', 'h2c'])
      .default('http1')
      .meta({
        description:
          'What tandem speaks to the endpoints: http1 (HTTP/1.1), h2 (HTTP/2 over TLS, offered by ALPN: needs tls, and an endpoint that picks http/1.1 is spoken to in HTTP/1.1) or h2c (HTTP/2 over plain TCP, prior knowledge). On h2 and h2c each connection carries as many concurrent requests as the endpoint allows (its SETTINGS_MAX_CONCURRENT_STREAMS) and pool.connections caps the connections.',
      }),
    loadBalancing: z
      .enum(['round_robin', 'least_request', 'random', 'ring_hash', 'peak_ewma'])
      .default('round_robin')
      .meta({
        description:
          'round_robin, least_request (power of two choices), random, ring_hash or peak_ewma (two choices, the lower latency estimate × (in-flight + 1); the estimate jumps to each slower try and decays with a 10 s time constant).',
      }),
    hashOn: hashOnSchema.optional().meta({ description: 'The ring_hash key: one of header, cookie, clientIp.' }),
    panicThreshold: z
      .number()
      .min(0)
      .max(100)
      .default(0)
      .meta({
        description:
          'Percent: while fewer of the endpoints are healthy and not ejected, balance over all of them instead of answering 503 no_healthy_upstream; 0 = off.',
      }),
    connectTimeout: duration(1).default(MS.second).meta({ description: 'Time allowed to open a connection to an endpoint.' }),
    pool: z
      .strictObject({
        connections: z.int().min(1).default(128).meta({ description: 'Most connections to each endpoint.' }),
        keepAliveTimeout: duration(1).default(4 * MS.second).meta({ description: 'How long an idle upstream connection is kept.' }),
      })
      .prefault({})
      .meta({ description: 'Connections to each endpoint.' }),
    circuitBreaker: circuitBreakerSchema.prefault({}).meta({ description: 'Concurrency limits (always on) and the optional error-rate breaker.' }),
    retryBudget: retryBudgetSchema
      .prefault({})
      .meta({ description: 'Retries in flight as a share of the requests in flight, always on; circuitBreaker.maxRetries stays a hard cap. Over it a retry is skipped.' }),
    outlierDetection: outlierDetectionSchema.optional().meta({ description: 'Ejects endpoints that fail in a row; off when absent.' }),
    healthCheck: healthCheckSchema.optional().meta({ description: 'Active health checks, HTTP or gRPC; off when absent (endpoints start healthy).' }),
    tls: clusterTlsSchema.optional().meta({ description: 'Originate TLS (and mTLS) to the endpoints, always verifying their certificates; plain HTTP when absent.' }),
  })
  .transform(({ endpoints, ...cluster }) => ({ ...cluster, endpoints: endpoints ?? [] }));

/** More threads than this is a typo, not a machine: Node's own limit is memory. */
const MAX_WORKERS = 256;

/** What a user writes; `configSchema` adds the names derived from positions. */
export const configInputSchema = z
  .strictObject({
    workers: z
      .union([z.int().min(1).max(MAX_WORKERS), z.literal('auto')])
      .default(1)
      .meta({
        description:
          'Worker threads serving every listener on the same ports: a number, or auto (the container CPU quota rounded up, else the number of CPUs). One admin API, metrics summed, limits and breakers tandem-wide (docs/workers.md).',
      }),
    admin: adminSchema.prefault({}).meta({ description: 'The admin API: /ready, /live, /metrics, /config, /clusters, /reload, /quitquitquit.' }),
    accessLog: accessLogSchema.prefault({}).meta({ description: 'One line per request.' }),
    drain: drainSchema.prefault({}).meta({ description: 'Graceful shutdown on SIGTERM, SIGINT or POST /quitquitquit.' }),
    tracing: tracingSchema.optional().meta({ description: 'OpenTelemetry spans exported over OTLP/HTTP; off (and free) when absent.' }),
    listeners: z.array(listenerSchema).min(1).meta({ description: 'Where tandem accepts requests, each with its routes.' }),
    clusters: z.array(clusterSchema).default([]).meta({ description: 'Upstream services the routes send requests to.' }),
  })
  .meta({
    title: 'tandem configuration',
    description:
      'Configuration of tandem, an L7 HTTP reverse-proxy sidecar. Durations are "250ms", "2s", "1m", "1h" or integer milliseconds; sizes are "512B", "64KiB", "1MiB" or integer bytes.',
  });

export const configSchema = configInputSchema.transform((config) => ({
  ...config,
  listeners: config.listeners.map(({ name, ...listener }, i) => {
    const listenerName = name ?? defaultListenerName(i);
    return {
      name: listenerName,
      ...listener,
      routes: listener.routes.map(({ name, ...route }, j) => ({ name: name ?? defaultRouteName(listenerName, j), ...route })),
    };
  }),
}));

export function defaultListenerName(index: number): string {
  return `listener-${index}`;
}

export function defaultRouteName(listenerName: string, index: number): string {
  return `${listenerName}.${index}`;
}

// Compile-time proof that the schema yields exactly what the rest of tandem reads.
type Assert<T extends true> = T;
export type SchemaOutputIsConfig = Assert<z.output<typeof configSchema> extends Config ? true : false>;
