// The shape of the YAML file (CONTRACT §2) and the defaults it omits.
// Relations between keys (exactly one of, references, duplicates) live in
// rules.ts, where they are checked even when a shape error elsewhere stops
// zod's own refinements.

import * as z from 'zod';
import type { Config, RetryConfig, RetryOn } from './types.js';
import {
  DURATION_PATTERN,
  SIZE_PATTERN,
  parseDuration,
  parseSize,
  type UnitResult,
} from './units.js';
import { parseHostPort } from './host-port.js';

export const NOT_SUPPORTED = 'not supported yet';

const RETRY_ON = ['connect-failure', 'reset', '5xx', 'gateway-error', 'retriable-status-codes'] as const satisfies readonly RetryOn[];
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

// Reserved keys keep their place in the shape so that using them is a clear,
// positioned error instead of an "unknown key".
const notSupported = z
  .unknown()
  .refine(() => false, { message: NOT_SUPPORTED, params: { at: 'key' } })
  .meta({ description: 'Reserved for a later version of tandem: not supported yet.', not: {} })
  .optional();

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
  address: z.string().min(1).default('127.0.0.1'),
  port: port(0).default(9901),
});

const accessLogSchema = z.strictObject({
  format: z.enum(['json', 'text', 'off']).default('json'),
  path: z.string().min(1).default('stdout'),
});

const drainSchema = z.strictObject({
  delay: duration().default(0),
  timeout: duration().default(30 * MS.second),
});

const limitsSchema = z.strictObject({
  maxHeaderBytes: size(1).default(60 * KIB),
  maxBodyBytes: size().default(0),
  maxHeaders: z.int().min(1).default(100),
  headersTimeout: duration(1).default(10 * MS.second),
  requestTimeout: duration(1).default(60 * MS.second),
  idleTimeout: duration(1).default(60 * MS.second),
});

const headerMatchSchema = z.strictObject({
  name: headerName,
  exact: z.string().optional(),
  prefix: z.string().optional(),
  regex: regex.optional(),
  present: z.boolean().optional(),
});

const matchSchema = z.strictObject({
  prefix: absolutePath.optional(),
  path: absolutePath.optional(),
  regex: regex.optional(),
  host: hostPattern.optional(),
  methods: z.array(method).min(1).optional(),
  headers: z.array(headerMatchSchema).min(1).optional(),
});

const rewriteSchema = z.strictObject({
  prefix: absolutePath.optional(),
  host: z.string().min(1).optional(),
});

const weightedClustersSchema = z
  .array(z.strictObject({ cluster: z.string().min(1), weight: z.int().min(0) }))
  .min(1)
  .refine((entries) => entries.some((e) => e.weight > 0), { error: 'at least one weight must be greater than 0' });

const directResponseSchema = z.strictObject({
  status: z.int().min(200).max(599),
  body: z.string().optional(),
});

const headerOpsSchema = z.strictObject({
  set: z.record(headerName, headerValue).optional(),
  remove: z.array(headerName).optional(),
});

const retriesSchema = z
  .strictObject({
    attempts: z.int().min(0).max(10).optional(),
    perTryTimeout: duration().optional(),
    retryOn: z.array(z.enum(RETRY_ON)).min(1).optional(),
    retriableStatusCodes: z.array(z.int().min(100).max(599)).optional(),
    backoff: z.strictObject({ base: duration().optional(), max: duration().optional() }).optional(),
    retryNonIdempotent: z.boolean().optional(),
    bufferLimit: size().optional(),
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
    name: name.optional(),
    match: matchSchema,
    rewrite: rewriteSchema.optional(),
    cluster: z.string().min(1).optional(),
    weightedClusters: weightedClustersSchema.optional(),
    directResponse: directResponseSchema.optional(),
    timeout: duration().default(15 * MS.second),
    retries: retriesSchema.optional(),
    requestHeaders: headerOpsSchema.optional(),
    responseHeaders: headerOpsSchema.optional(),
    rateLimit: notSupported,
    auth: notSupported,
  })
  .transform(({ retries, rateLimit: _rateLimit, auth: _auth, ...route }) => ({
    ...route,
    retries: resolveRetries(retries, route.timeout),
  }));

const listenerSchema = z.strictObject({
  name: name.optional(),
  address: z.string().min(1).default('0.0.0.0'),
  port: port(0),
  limits: limitsSchema.prefault({}),
  tls: notSupported,
  routes: z.array(routeSchema).min(1),
});

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
      address: z.string().min(1),
      port: port(1),
      weight: z.int().min(1).default(1),
    }),
  ],
  { error: 'an endpoint is "host:port" or { address, port, weight }' },
);

const hashOnSchema = z.strictObject({
  header: headerName.optional(),
  cookie: z.string().min(1).optional(),
  clientIp: z.literal(true).optional(),
});

const circuitBreakerSchema = z.strictObject({
  maxRequests: z.int().min(1).default(1024),
  maxPendingRequests: z.int().min(1).default(1024),
  maxRetries: z.int().min(0).default(3),
  errorThresholdPercentage: z.number().gt(0).max(100).optional(),
  volumeThreshold: z.int().min(1).default(20),
  window: duration(1).default(10 * MS.second),
  resetTimeout: duration(1).default(30 * MS.second),
});

const outlierDetectionSchema = z.strictObject({
  consecutive5xx: z.int().min(1).default(5),
  baseEjectionTime: duration(1).default(30 * MS.second),
  maxEjectionPercent: z.int().min(0).max(100).default(50),
});

const healthCheckSchema = z.strictObject({
  path: z.string().startsWith('/', { error: 'must start with "/"' }),
  interval: duration(1).default(5 * MS.second),
  timeout: duration(1).default(MS.second),
  healthyThreshold: z.int().min(1).default(2),
  unhealthyThreshold: z.int().min(1).default(3),
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
    name,
    endpoints: z.array(endpointSchema).min(1).optional().meta({ description: 'Fixed endpoints: "host:port" or { address, port, weight }; exactly one of endpoints | dns.' }),
    dns: dnsSchema.optional().meta({ description: 'Endpoints discovered and refreshed from a DNS name; exactly one of endpoints | dns.' }),
    loadBalancing: z.enum(['round_robin', 'least_request', 'random', 'ring_hash']).default('round_robin'),
    hashOn: hashOnSchema.optional(),
    connectTimeout: duration(1).default(MS.second),
    pool: z
      .strictObject({
        connections: z.int().min(1).default(128),
        keepAliveTimeout: duration(1).default(4 * MS.second),
      })
      .prefault({}),
    circuitBreaker: circuitBreakerSchema.prefault({}),
    outlierDetection: outlierDetectionSchema.optional(),
    healthCheck: healthCheckSchema.optional(),
    tls: notSupported,
  })
  .transform(({ tls: _tls, endpoints, ...cluster }) => ({ ...cluster, endpoints: endpoints ?? [] }));

/** What a user writes; `configSchema` adds the names derived from positions. */
export const configInputSchema = z
  .strictObject({
    admin: adminSchema.prefault({}),
    accessLog: accessLogSchema.prefault({}),
    drain: drainSchema.prefault({}),
    listeners: z.array(listenerSchema).min(1),
    clusters: z.array(clusterSchema).default([]),
  })
  .meta({
    title: 'tandem configuration',
    description:
      'Configuration of tandem, an L7 HTTP reverse-proxy sidecar. Durations are "250ms", "2s", "1m", "1h" or integer milliseconds; sizes are "512B", "64KiB", "1MiB" or integer bytes.',
  });

export const configSchema = configInputSchema.transform((config) => ({
  ...config,
  listeners: config.listeners.map(({ tls: _tls, name, ...listener }, i) => {
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
