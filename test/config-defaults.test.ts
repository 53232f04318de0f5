import { readFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { loadConfigFile, loadConfigText } from '../src/config/load.js';
import { formatConfigError } from '../src/config/errors.js';
import { DEFAULT_CONFIG_YAML } from '../src/config/default.js';
import type { Config, RouteConfig } from '../src/config/types.js';

const yaml = (...lines: string[]) => lines.join('\n') + '\n';

function load(text: string): Config {
  const result = loadConfigText(text, 'f.yaml');
  if (!result.ok) throw new Error(result.errors.map(formatConfigError).join('\n'));
  return result.config;
}

const MINIMAL = yaml(
  'listeners:',
  '  - name: inbound',
  '    port: 15000',
  '    routes:',
  '      - match: { prefix: / }',
  '        cluster: app',
  'clusters:',
  '  - name: app',
  '    endpoints: [127.0.0.1:8080]',
);

/** A one-route file whose route has the given extra lines (8-space indent). */
function routeWith(...lines: string[]): RouteConfig {
  const config = load(
    yaml('listeners:', '  - port: 15000', '    routes:', '      - match: { prefix: / }', '        cluster: app', ...lines, 'clusters:', '  - name: app', '    endpoints: [127.0.0.1:8080]'),
  );
  return config.listeners[0]!.routes[0]!;
}

describe('the minimal file of CONTRACT §2 gets every default', () => {
  test('whole effective configuration', () => {
    expect(load(MINIMAL)).toEqual({
      workers: 1,
      admin: { address: '127.0.0.1', port: 9901 },
      accessLog: { format: 'json', path: 'stdout' },
      drain: { delay: 0, timeout: 30_000 },
      listeners: [
        {
          name: 'inbound',
          address: '0.0.0.0',
          port: 15000,
          protocols: ['http1', 'h2c'],
          http2: { maxConcurrentStreams: 100 },
          limits: {
            maxHeaderBytes: 61_440,
            maxBodyBytes: 0,
            maxHeaders: 100,
            headersTimeout: 10_000,
            requestTimeout: 60_000,
            idleTimeout: 60_000,
            headersWithUnderscores: 'reject',
          },
          routes: [
            {
              name: 'inbound.0',
              match: { prefix: '/' },
              cluster: 'app',
              timeout: 15_000,
              maxGrpcTimeout: 15_000,
              idleTimeout: 0,
              retries: {
                attempts: 1,
                perTryTimeout: 15_000,
                retryOn: ['connect-failure'],
                retriableStatusCodes: [],
                backoff: { base: 25, max: 250 },
                retryNonIdempotent: false,
                bufferLimit: 65_536,
              },
            },
          ],
        },
      ],
      clusters: [
        {
          name: 'app',
          endpoints: [{ address: '127.0.0.1', port: 8080, weight: 1 }],
          protocol: 'http1',
          loadBalancing: 'round_robin',
          panicThreshold: 0,
          connectTimeout: 1000,
          pool: { connections: 128, keepAliveTimeout: 4000 },
          // the concurrency limits are always on; the error-rate breaker only with a threshold
          circuitBreaker: {
            maxRequests: 1024,
            maxPendingRequests: 1024,
            maxRetries: 3,
            volumeThreshold: 20,
            window: 10000,
            resetTimeout: 30000,
          },
          retryBudget: { percent: 20, minConcurrency: 3 },
        },
      ],
    });
  });

  test('a partial block keeps the defaults of the keys it leaves out', () => {
    const config = load(
      yaml(
        'admin: { port: 19901 }',
        'accessLog: { format: text }',
        'drain: { delay: 2s }',
        'listeners:',
        '  - port: 15000',
        '    limits: { maxBodyBytes: 1MiB }',
        '    routes: [{ match: { prefix: / }, directResponse: { status: 204 } }]',
      ),
    );
    expect(config.admin).toEqual({ address: '127.0.0.1', port: 19901 });
    expect(config.accessLog).toEqual({ format: 'text', path: 'stdout' });
    expect(config.drain).toEqual({ delay: 2000, timeout: 30_000 });
    expect(config.listeners[0]!.limits.maxBodyBytes).toBe(1_048_576);
    expect(config.listeners[0]!.limits.maxHeaderBytes).toBe(61_440);
    expect(config.clusters).toEqual([]);
  });

  test('unnamed listeners are listener-INDEX and their routes LISTENER.INDEX', () => {
    const config = load(
      yaml(
        'listeners:',
        '  - port: 15000',
        '    routes: [{ match: { prefix: / }, directResponse: { status: 200 } }]',
        '  - port: 15001',
        '    routes:',
        '      - { name: named, match: { prefix: /a }, directResponse: { status: 200 } }',
        '      - { match: { prefix: / }, directResponse: { status: 404, body: nope } }',
      ),
    );
    expect(config.listeners.map((l) => [l.name, l.routes.map((r) => r.name)])).toEqual([
      ['listener-0', ['listener-0.0']],
      ['listener-1', ['named', 'listener-1.1']],
    ]);
  });
});

describe('route retries and timeout (CONTRACT §4)', () => {
  test('no retries block: one retry on connect-failure, per-try timeout = route timeout', () => {
    expect(routeWith('        timeout: 3s').retries).toEqual({
      attempts: 1,
      perTryTimeout: 3000,
      retryOn: ['connect-failure'],
      retriableStatusCodes: [],
      backoff: { base: 25, max: 250 },
      retryNonIdempotent: false,
      bufferLimit: 65_536,
    });
  });

  test('an empty retries block: two retries on connect-failure, reset, gateway-error', () => {
    const route = routeWith('        retries: {}');
    expect(route.retries.attempts).toBe(2);
    expect(route.retries.retryOn).toEqual(['connect-failure', 'reset', 'gateway-error']);
    expect(route.retries.perTryTimeout).toBe(15_000);
  });

  test('explicit retry settings are converted to ms and bytes', () => {
    const route = routeWith(
      '        timeout: 0',
      '        retries:',
      '          attempts: 0',
      '          perTryTimeout: 1.5s',
      '          retryOn: [5xx, retriable-status-codes]',
      '          retriableStatusCodes: [409, 429]',
      '          backoff: { base: 10ms, max: 1s }',
      '          retryNonIdempotent: true',
      '          bufferLimit: 1MiB',
    );
    expect(route.timeout).toBe(0);
    expect(route.retries).toEqual({
      attempts: 0,
      perTryTimeout: 1500,
      retryOn: ['5xx', 'retriable-status-codes'],
      retriableStatusCodes: [409, 429],
      backoff: { base: 10, max: 1000 },
      retryNonIdempotent: true,
      bufferLimit: 1_048_576,
    });
  });

  test('timeout 0 means none, and so does the per-try timeout it defaults', () => {
    const route = routeWith('        timeout: 0s');
    expect([route.timeout, route.retries.perTryTimeout]).toEqual([0, 0]);
  });
});

describe('route match and actions', () => {
  test('methods are uppercased, host lowercased, header matchers kept as written', () => {
    const config = load(
      yaml(
        'listeners:',
        '  - port: 15000',
        '    routes:',
        '      - match:',
        '          regex: "/users/[0-9]+"',
        '          host: "*.Example.COM"',
        '          methods: [get, Post]',
        '          headers:',
        '            - { name: X-Canary, exact: "true" }',
        '            - { name: x-debug, present: true }',
        '        rewrite: { host: api.internal }',
        '        weightedClusters:',
        '          - { cluster: app, weight: 90 }',
        '          - { cluster: app, weight: 0 }',
        '        requestHeaders: { set: { x-port: 8080, x-on: true }, remove: [x-debug] }',
        'clusters:',
        '  - name: app',
        '    endpoints: [127.0.0.1:8080]',
      ),
    );
    const route = config.listeners[0]!.routes[0]!;
    expect(route.match).toEqual({
      regex: '/users/[0-9]+',
      host: '*.example.com',
      methods: ['GET', 'POST'],
      headers: [
        { name: 'X-Canary', exact: 'true' },
        { name: 'x-debug', present: true },
      ],
    });
    expect(route.weightedClusters).toEqual([
      { cluster: 'app', weight: 90 },
      { cluster: 'app', weight: 0 },
    ]);
    expect(route.requestHeaders).toEqual({ set: { 'x-port': '8080', 'x-on': 'true' }, remove: ['x-debug'] });
  });
});

describe('endpoints', () => {
  test('string and object forms, IPv6 in brackets, weight default 1', () => {
    const config = load(
      yaml(
        'listeners: [{ port: 15000, routes: [{ match: { prefix: / }, cluster: app }] }]',
        'clusters:',
        '  - name: app',
        '    endpoints:',
        '      - 127.0.0.1:8080',
        '      - "[::1]:8081"',
        '      - app.default.svc.cluster.local:80',
        '      - { address: 10.0.0.1, port: 9000 }',
        '      - { address: 10.0.0.2, port: 9001, weight: 3 }',
        '    loadBalancing: ring_hash',
        '    hashOn: { cookie: session }',
      ),
    );
    expect(config.clusters[0]!.endpoints).toEqual([
      { address: '127.0.0.1', port: 8080, weight: 1 },
      { address: '::1', port: 8081, weight: 1 },
      { address: 'app.default.svc.cluster.local', port: 80, weight: 1 },
      { address: '10.0.0.1', port: 9000, weight: 1 },
      { address: '10.0.0.2', port: 9001, weight: 3 },
    ]);
    expect(config.clusters[0]!.hashOn).toEqual({ cookie: 'session' });
  });
});

describe('shipped files', () => {
  test('the embedded default is config/tandem.yaml, byte for byte', async () => {
    const file = await readFile(new URL('../config/tandem.yaml', import.meta.url), 'utf8');
    expect(DEFAULT_CONFIG_YAML).toBe(file);
  });

  test('the embedded default is the sidecar layout of CONTRACT §1', () => {
    const result = loadConfigText(DEFAULT_CONFIG_YAML, '<default>');
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const { admin, listeners, clusters } = result.config;
    expect(admin).toEqual({ address: '127.0.0.1', port: 9901 });
    expect(listeners.map((l) => [l.name, l.address, l.port])).toEqual([['inbound', '0.0.0.0', 15000]]);
    expect(listeners[0]!.routes.map((r) => [r.name, r.match, r.cluster])).toEqual([['inbound.0', { prefix: '/' }, 'app']]);
    expect(clusters.map((c) => [c.name, c.endpoints])).toEqual([['app', [{ address: '127.0.0.1', port: 8080, weight: 1 }]]]);
  });

  test('config/examples/full.yaml loads', async () => {
    const result = await loadConfigFile(new URL('../config/examples/full.yaml', import.meta.url).pathname);
    expect(result.ok ? [] : result.errors.map(formatConfigError)).toEqual([]);
    if (!result.ok) return;
    expect(result.config.listeners[0]!.routes.map((r) => r.name)).toEqual([
      'health',
      'orders-canary',
      'orders',
      'api',
      'events',
      'everything-else',
    ]);
    expect(result.config.listeners[0]!.limits.maxBodyBytes).toBe(10 * 1024 * 1024);
    expect(result.config.drain.delay).toBe(5000);
  });
});
