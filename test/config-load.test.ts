import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadConfigFile, loadConfigText } from '../src/config/load.js';
import { formatConfigError } from '../src/config/errors.js';

const yaml = (...lines: string[]) => lines.join('\n') + '\n';

/** The `validate` output for a text: one formatted line per error. */
function errorsOf(text: string): string[] {
  const result = loadConfigText(text, 'f.yaml');
  if (result.ok) throw new Error('expected the configuration to be refused');
  return result.errors.map(formatConfigError);
}

// A valid tail shared by the cases that break something above it.
const CLUSTERS = ['clusters:', '  - name: app', '    endpoints: [127.0.0.1:8080]'];

/** One listener routing to cluster `app`, whose further keys are `lines` (from line 9). */
const oneCluster = (...lines: string[]) =>
  yaml(
    'listeners:', //                                   1
    '  - port: 15000', //                              2
    '    routes:', //                                  3
    '      - match: { prefix: / }', //                 4
    '        cluster: app', //                         5
    ...CLUSTERS, //                                    6-8
    ...lines,
  );

describe('error positions and messages', () => {
  test('unknown key points at the key, with a hint when close', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - name: inbound', //                            2
      '    port: 15000', //                              3
      '    routes:', //                                  4
      '      - match: { prefix: / }', //                 5
      '        cluster: app', //                         6
      '        tiemout: 2s', //                          7
      '        zzz: 1', //                               8
      ...CLUSTERS,
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:7:9: listeners.0.routes.0.tiemout: unknown key "tiemout" (did you mean "timeout"?)',
      'f.yaml:8:9: listeners.0.routes.0.zzz: unknown key "zzz"',
    ]);
  });

  test('unknown key at the top level and inside a flow mapping', () => {
    const text = yaml(
      'listner: {}', //                                 1
      'listeners:', //                                   2
      '  - port: 15000', //                              3
      '    routes:', //                                  4
      '      - match: { prefx: / }', //                  5
      '        cluster: app', //                         6
      ...CLUSTERS,
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:1:1: listner: unknown key "listner" (did you mean "listeners"?)',
      'f.yaml:5:16: listeners.0.routes.0.match: needs one of prefix | path | regex',
      'f.yaml:5:18: listeners.0.routes.0.match.prefx: unknown key "prefx" (did you mean "prefix"?)',
    ]);
  });

  test('bad duration and bad size point at the value', () => {
    const text = yaml(
      'drain:', //                                       1
      '  timeout: 30 seconds', //                        2
      'listeners:', //                                   3
      '  - port: 15000', //                              4
      '    limits:', //                                  5
      '      maxHeaderBytes: 60kb', //                   6
      '      maxBodyBytes: -1', //                       7
      '      headersTimeout: 0s', //                     8
      '    routes:', //                                  9
      '      - match: { prefix: / }', //                 10
      '        cluster: app', //                         11
      '        timeout: 1.5ms', //                       12
      ...CLUSTERS,
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:2:12: drain.timeout: "30 seconds" is not a duration: write a number and a unit (ms, s, m, h), e.g. "250ms" or "2s"',
      'f.yaml:6:23: listeners.0.limits.maxHeaderBytes: unknown size unit "kb" in "60kb" (use B, KB, MB, GB, KiB, MiB, GiB)',
      'f.yaml:7:21: listeners.0.limits.maxBodyBytes: sizes cannot be negative (-1)',
      'f.yaml:8:23: listeners.0.limits.headersTimeout: must be greater than 0',
      'f.yaml:12:18: listeners.0.routes.0.timeout: "1.5ms" is not a whole number of milliseconds',
    ]);
  });

  test('a route naming an undefined cluster, directly or weighted', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    routes:', //                                  3
      '      - match: { prefix: /a }', //                4
      '        cluster: ap', //                          5
      '      - match: { prefix: /b }', //                6
      '        weightedClusters:', //                    7
      '          - { cluster: app, weight: 1 }', //      8
      '          - { cluster: nowhere, weight: 1 }', //  9
      ...CLUSTERS,
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:5:18: listeners.0.routes.0.cluster: unknown cluster "ap" (did you mean "app"?)',
      'f.yaml:9:24: listeners.0.routes.1.weightedClusters.1.cluster: unknown cluster "nowhere"',
    ]);
  });

  test('missing required keys point at the enclosing mapping', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - name: inbound', //                            2
      '    routes:', //                                  3
      '      - cluster: app', //                         4
      'clusters:', //                                    5
      '  - endpoints: [127.0.0.1:8080]', //              6
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:2:5: listeners.0.port: missing required key "port"',
      'f.yaml:4:9: listeners.0.routes.0.match: missing required key "match"',
      'f.yaml:6:5: clusters.0.name: missing required key "name"',
      'f.yaml:4:18: listeners.0.routes.0.cluster: unknown cluster "app"',
    ].sort(byPosition));
  });

  test('endpoint forms: missing port, unbracketed IPv6, bad object', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    routes: [{ match: { prefix: / }, cluster: app }]', // 3
      'clusters:', //                                    4
      '  - name: app', //                                5
      '    endpoints:', //                               6
      '      - 127.0.0.1', //                            7
      '      - ::1:80', //                               8
      '      - { address: 10.0.0.1 }', //                9
      '      - { address: 10.0.0.1, port: 80, wieght: 2 }', // 10
      '      - 8080', //                                 11
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:7:9: clusters.0.endpoints.0: missing port in "127.0.0.1": write HOST:PORT, e.g. "127.0.0.1:8080"',
      'f.yaml:8:9: clusters.0.endpoints.1: "::1:80": write IPv6 addresses in brackets, e.g. "[::1]:8080"',
      'f.yaml:9:9: clusters.0.endpoints.2.port: missing required key "port"',
      'f.yaml:10:40: clusters.0.endpoints.3.wieght: unknown key "wieght" (did you mean "weight"?)',
      'f.yaml:11:9: clusters.0.endpoints.4: an endpoint is "host:port" or { address, port, weight }',
    ]);
  });

  test('exactly one of prefix | path | regex and of cluster | weightedClusters | directResponse', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    routes:', //                                  3
      '      - match: { prefix: /a, path: /a }', //      4
      '        cluster: app', //                         5
      '        directResponse: { status: 200 }', //      6
      '      - match: { path: /b }', //                  7
      ...CLUSTERS,
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:4:30: listeners.0.routes.0.match.path: only one of prefix | path | regex may be set, "prefix" is already set',
      'f.yaml:6:9: listeners.0.routes.0.directResponse: only one of cluster | weightedClusters | directResponse may be set, "cluster" is already set',
      'f.yaml:7:9: listeners.0.routes.1: needs one of cluster | weightedClusters | directResponse',
    ]);
  });

  test('bad regular expressions in the path and in header matchers', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    routes:', //                                  3
      '      - match:', //                               4
      '          regex: "/users/(\\\\d+"', //            5
      '          headers:', //                           6
      '            - { name: x-v, regex: "[a-" }', //    7
      '            - { name: x-w, exact: a, present: true }', // 8
      '        cluster: app', //                         9
      ...CLUSTERS,
    );
    const errors = errorsOf(text);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/^f\.yaml:5:18: listeners\.0\.routes\.0\.match\.regex: Invalid regular expression: .*Unterminated group/);
    expect(errors[1]).toMatch(
      /^f\.yaml:7:35: listeners\.0\.routes\.0\.match\.headers\.0\.regex: Invalid regular expression: .*Unterminated character class/,
    );
    expect(errors[2]).toBe(
      'f.yaml:8:38: listeners.0.routes.0.match.headers.1.present: only one of exact | prefix | regex | present may be set, "exact" is already set',
    );
  });

  test('route auth.jwt: exactly one of jwksFile | jwksUri, and a jwksFile tandem cannot read is refused at the value', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    address: 127.0.0.1', //                       3
      '    routes:', //                                  4
      '      - match: { prefix: / }', //                 5
      '        cluster: app', //                         6
      '        auth:', //                                7
      '          jwt:', //                               8
      '            issuer: https://issuer.example', //   9
      '            audiences: [orders]', //              10
      '            jwksFile: /nonexistent/jwks.json', // 11
      '            jwksUri: https://issuer.example/jwks', // 12
      'clusters:', //                                    13
      '  - name: app', //                                14
      '    endpoints: [127.0.0.1:8080]', //              15
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:11:23: listeners.0.routes.0.auth.jwt.jwksFile: cannot read /nonexistent/jwks.json: ENOENT',
      'f.yaml:12:13: listeners.0.routes.0.auth.jwt.jwksUri: only one of jwksFile | jwksUri may be set, "jwksFile" is already set',
    ]);
  });

  test('resilience blocks: the CONTRACT §2 defaults, and their errors at the value', () => {
    const ok = loadConfigText(
      yaml(
        'listeners:',
        '  - port: 15000',
        '    routes: [{ match: { prefix: / }, cluster: app }]',
        'clusters:',
        '  - name: app',
        '    endpoints: [127.0.0.1:8080]',
        '    healthCheck: { path: /healthz }',
        '    outlierDetection: {}',
        '    circuitBreaker: { errorThresholdPercentage: 50 }',
        '  - name: plain',
        '    endpoints: [127.0.0.1:8081]',
      ),
      'f.yaml',
    );
    if (!ok.ok) throw new Error(ok.errors.map(formatConfigError).join('\n'));
    const [app, plain] = ok.config.clusters;
    expect(app!.healthCheck).toEqual({ path: '/healthz', interval: 5000, timeout: 1000, healthyThreshold: 2, unhealthyThreshold: 3 });
    expect(app!.outlierDetection).toEqual({ consecutive5xx: 5, baseEjectionTime: 30000, maxEjectionPercent: 50 });
    expect(app!.circuitBreaker).toEqual({
      maxRequests: 1024,
      maxPendingRequests: 1024,
      maxRetries: 3,
      errorThresholdPercentage: 50,
      volumeThreshold: 20,
      window: 10000,
      resetTimeout: 30000,
    });
    // the concurrency limits are always on; the other blocks only when written
    expect(plain!.circuitBreaker.maxRequests).toBe(1024);
    expect(plain!.circuitBreaker.errorThresholdPercentage).toBeUndefined();
    expect(plain!.healthCheck).toBeUndefined();
    expect(plain!.outlierDetection).toBeUndefined();

    const bad = yaml(
      'listeners:', //                                                   1
      '  - port: 15000', //                                              2
      '    routes: [{ match: { prefix: / }, cluster: app }]', //         3
      'clusters:', //                                                    4
      '  - name: app', //                                                5
      '    endpoints: [127.0.0.1:8080]', //                              6
      '    healthCheck: { path: healthz, interval: soon }', //           7
      '    outlierDetection: { maxEjectionPercent: 150 }', //            8
      '    circuitBreaker: { errorThresholdPercentage: 0, maxRetries: -1 }', // 9
    );
    const lines = errorsOf(bad);
    expect(lines).toHaveLength(5);
    expect(lines.some((l) => l.startsWith('f.yaml:7:26: clusters.0.healthCheck.path:'))).toBe(true);
    expect(lines.some((l) => l.startsWith('f.yaml:7:45: clusters.0.healthCheck.interval:'))).toBe(true);
    expect(lines.some((l) => l.startsWith('f.yaml:8:45: clusters.0.outlierDetection.maxEjectionPercent:'))).toBe(true);
    expect(lines.some((l) => l.startsWith('f.yaml:9:49: clusters.0.circuitBreaker.errorThresholdPercentage:'))).toBe(true);
    expect(lines.some((l) => l.startsWith('f.yaml:9:64: clusters.0.circuitBreaker.maxRetries:'))).toBe(true);
  });

  test('retryBudget: percent 0-100, a whole minConcurrency, no other key; errors at the value or the key', () => {
    const bad = yaml(
      'listeners:', //                                                   1
      '  - port: 15000', //                                              2
      '    routes: [{ match: { prefix: / }, cluster: app }]', //         3
      'clusters:', //                                                    4
      '  - name: app', //                                                5
      '    endpoints: [127.0.0.1:8080]', //                              6
      '    retryBudget: { percent: 120, minConcurrency: 1.5, min: 2 }', // 7
    );
    expect(errorsOf(bad)).toEqual([
      'f.yaml:7:29: clusters.0.retryBudget.percent: must be at most 100',
      'f.yaml:7:50: clusters.0.retryBudget.minConcurrency: expected an integer, got 1.5',
      'f.yaml:7:55: clusters.0.retryBudget.min: unknown key "min"',
    ]);
  });

  test('duplicate names and conflicting ports', () => {
    const text = yaml(
      'admin: { port: 9901 }', //                        1
      'listeners:', //                                   2
      '  - name: inbound', //                            3
      '    port: 15000', //                              4
      '    routes:', //                                  5
      '      - name: r', //                              6
      '        match: { prefix: / }', //                 7
      '        cluster: app', //                         8
      '      - name: r', //                              9
      '        match: { prefix: / }', //                 10
      '        cluster: app', //                         11
      '  - name: inbound', //                            12
      '    address: 127.0.0.1', //                       13
      '    port: 15000', //                              14
      '    routes: [{ match: { prefix: / }, cluster: app }]', // 15
      '  - name: admin-clash', //                        16
      '    port: 9901', //                               17
      '    routes: [{ match: { prefix: / }, cluster: app }]', // 18
      '  - name: other-address', //                      19
      '    address: 127.0.0.2', //                       20
      '    port: 16000', //                              21
      '    routes: [{ match: { prefix: / }, cluster: app }]', // 22
      '  - name: same-port-elsewhere', //                23
      '    address: 127.0.0.3', //                       24
      '    port: 16000', //                              25
      '    routes: [{ match: { prefix: / }, cluster: app }]', // 26
      'clusters:', //                                    27
      '  - name: app', //                                28
      '    endpoints: [127.0.0.1:8080]', //              29
      '  - name: app', //                                30
      '    endpoints: [127.0.0.1:8081]', //              31
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:9:15: listeners.0.routes.1.name: duplicate route name "r" (first used at listeners.0.routes.0)',
      'f.yaml:12:11: listeners.1.name: duplicate listener name "inbound" (first used at listeners.0)',
      'f.yaml:14:11: listeners.1.port: 127.0.0.1:15000 conflicts with listener "inbound" on 0.0.0.0:15000',
      'f.yaml:17:11: listeners.2.port: 0.0.0.0:9901 conflicts with the admin server on 127.0.0.1:9901',
      'f.yaml:30:11: clusters.1.name: duplicate cluster name "app" (first used at clusters.0)',
    ]);
  });

  test('a defaulted route name can collide with an explicit one', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - name: inbound', //                            2
      '    port: 15000', //                              3
      '    routes:', //                                  4
      '      - name: inbound.1', //                      5
      '        match: { prefix: /a }', //                6
      '        cluster: app', //                         7
      '      - match: { prefix: / }', //                 8
      '        cluster: app', //                         9
      ...CLUSTERS,
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:8:9: listeners.0.routes.1.name: duplicate route name "inbound.1" (first used at listeners.0.routes.0)',
    ]);
  });

  test('YAML syntax errors carry their position', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    routes: [ { match: { prefix: / }, cluster: app }', // 3
      'clusters: []', //                                 4
    );
    const errors = errorsOf(text);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]).toMatch(/^f\.yaml:4:1: listeners\.0\.routes\.0: Flow sequence/);
  });

  test('duplicate keys in a mapping are a YAML error at the second key', () => {
    const text = yaml('listeners:', '  - port: 15000', '    port: 15001', '    routes: []');
    expect(errorsOf(text)).toEqual(['f.yaml:3:5: listeners.0.port: Map keys must be unique']);
  });

  test('type errors say what was expected and what was found', () => {
    const text = yaml(
      'admin: { port: "9901" }', //                      1
      'accessLog: { format: yaml }', //                  2
      'listeners:', //                                   3
      '  - port: 70000', //                              4
      '    routes:', //                                  5
      '      - match: { prefix: api, methods: [get, "P O S T"] }', // 6
      '        directResponse: { status: 99 }', //       7
      '        retries: { attempts: 1.5, retryOn: [5xx, teapot] }', // 8
      'clusters: {}', //                                 9
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:1:16: admin.port: expected a number, got "9901"',
      'f.yaml:2:22: accessLog.format: must be one of json | text | off, got "yaml"',
      'f.yaml:4:11: listeners.0.port: must be at most 65535',
      'f.yaml:6:26: listeners.0.routes.0.match.prefix: must start with "/"',
      'f.yaml:6:46: listeners.0.routes.0.match.methods.1: not a valid HTTP method',
      'f.yaml:7:35: listeners.0.routes.0.directResponse.status: must be at least 200',
      'f.yaml:8:30: listeners.0.routes.0.retries.attempts: expected an integer, got 1.5',
      'f.yaml:8:50: listeners.0.routes.0.retries.retryOn.1: must be one of connect-failure | reset | 5xx | gateway-error | retriable-status-codes | cancelled | deadline-exceeded | resource-exhausted | internal | unavailable, got "teapot"',
      'f.yaml:9:11: clusters: expected a list, got a mapping',
    ]);
  });

  test('retry settings that contradict each other', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    routes:', //                                  3
      '      - match: { prefix: /a }', //                4
      '        cluster: app', //                         5
      '        retries: { backoff: { base: 1s } }', //   6
      '      - match: { prefix: /b }', //                7
      '        cluster: app', //                         8
      '        retries: { retryOn: [retriable-status-codes] }', // 9
      '      - match: { prefix: /c }', //                10
      '        cluster: app', //                         11
      '        retries: { retriableStatusCodes: [409] }', // 12
      ...CLUSTERS,
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:6:37: listeners.0.routes.0.retries.backoff.base: backoff.base (1000ms) exceeds backoff.max (250ms)',
      'f.yaml:9:29: listeners.0.routes.1.retries.retryOn: retriable-status-codes needs a non-empty retriableStatusCodes',
      'f.yaml:12:42: listeners.0.routes.2.retries.retriableStatusCodes: has no effect unless retryOn includes retriable-status-codes',
    ]);
  });

  test('a prefix rewrite needs a prefix or path match, and hashOn needs ring_hash with one key', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    routes:', //                                  3
      '      - match: { regex: "/v[0-9]+/.*" }', //      4
      '        rewrite: { prefix: / }', //               5
      '        cluster: app', //                         6
      'clusters:', //                                    7
      '  - name: app', //                                8
      '    endpoints: [127.0.0.1:8080]', //              9
      '    loadBalancing: ring_hash', //                 10
      '    hashOn: { header: x-user, clientIp: true }', // 11
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:5:20: listeners.0.routes.0.rewrite.prefix: rewrite.prefix needs a prefix or path match',
      'f.yaml:11:31: clusters.0.hashOn.clientIp: only one of header | cookie | clientIp may be set, "header" is already set',
    ]);
  });

  test('several kinds of errors in one file are all reported, sorted by position', () => {
    const text = yaml(
      'listeners:', //                                   1
      '  - port: 15000', //                              2
      '    routes:', //                                  3
      '      - match: { prefix: /, regex: "(" }', //     4
      '        cluster: missing', //                     5
      '        timeout: forever', //                     6
      'clusters:', //                                    7
      '  - name: app', //                                8
      '    endpoints: [localhost]', //                   9
      '    loadBalancing: round-robin', //               10
      '    hashOn: { header: x-user }', //               11
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:4:29: listeners.0.routes.0.match.regex: only one of prefix | path | regex may be set, "prefix" is already set',
      'f.yaml:4:36: listeners.0.routes.0.match.regex: Invalid regular expression: /(/: Unterminated group',
      'f.yaml:5:18: listeners.0.routes.0.cluster: unknown cluster "missing"',
      'f.yaml:6:18: listeners.0.routes.0.timeout: "forever" is not a duration: write a number and a unit (ms, s, m, h), e.g. "250ms" or "2s"',
      'f.yaml:9:17: clusters.0.endpoints.0: missing port in "localhost": write HOST:PORT, e.g. "127.0.0.1:8080"',
      'f.yaml:10:20: clusters.0.loadBalancing: must be one of round_robin | least_request | random | ring_hash | peak_ewma, got "round-robin" (did you mean "round_robin"?)',
      'f.yaml:11:5: clusters.0.hashOn: hashOn applies only with loadBalancing: ring_hash',
    ]);
  });

  test('peak_ewma takes no hashOn, and panicThreshold is a percentage', () => {
    const text = oneCluster(
      '    loadBalancing: peak_ewma', //                 9
      '    hashOn: { header: x-user }', //               10
      '    panicThreshold: 101', //                      11
    );
    const errors = errorsOf(text);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toBe('f.yaml:10:5: clusters.0.hashOn: hashOn applies only with loadBalancing: ring_hash');
    expect(errors[1]).toMatch(/^f\.yaml:11:21: clusters\.0\.panicThreshold: .*100/);
    expect(loadConfigText(yaml(...text.split('\n').slice(0, 9), '    panicThreshold: 12.5'), 'f.yaml')).toMatchObject({
      ok: true,
      config: { clusters: [{ loadBalancing: 'peak_ewma', panicThreshold: 12.5 }] },
    });
  });

  test('an empty file, or one holding only comments, is an error', () => {
    expect(errorsOf('')).toEqual(['f.yaml:1:1: (root): the configuration is empty: "listeners" is required']);
    expect(errorsOf('# nothing yet\n')).toEqual(['f.yaml:1:1: (root): the configuration is empty: "listeners" is required']);
  });

  test('a document that is not a mapping, or lacks listeners', () => {
    expect(errorsOf('- a\n- b\n')).toEqual(['f.yaml:1:1: (root): expected a mapping, got a list']);
    expect(errorsOf('clusters: []\n')).toEqual(['f.yaml:1:1: listeners: missing required key "listeners"']);
  });
});

describe('loadConfigFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tandem-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('reads and validates a file, naming it in errors', async () => {
    const good = join(dir, 'good.yaml');
    await writeFile(good, yaml('listeners:', '  - port: 15000', '    routes: [{ match: { prefix: / }, cluster: app }]', ...CLUSTERS));
    const ok = await loadConfigFile(good);
    expect(ok.ok && ok.config.listeners[0]?.routes[0]?.cluster).toBe('app');

    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'listeners: []\n');
    const result = await loadConfigFile(bad);
    expect(result.ok ? [] : result.errors.map(formatConfigError)).toEqual([`${bad}:1:12: listeners: needs at least 1 item`]);
  });

  test('an unreadable file is one error naming the file', async () => {
    const missing = join(dir, 'missing.yaml');
    const result = await loadConfigFile(missing);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors).toHaveLength(1);
    expect(formatConfigError(result.errors[0]!)).toBe(
      `${missing}:1:1: (root): cannot read file: ENOENT: no such file or directory, open '${missing}'`,
    );
  });
});

function byPosition(a: string, b: string): number {
  const pos = (s: string) => s.split(':').slice(1, 3).map(Number) as [number, number];
  const [la, ca] = pos(a);
  const [lb, cb] = pos(b);
  return la - lb || ca - cb;
}

describe('cluster protocol', () => {
  test('defaults to http1; h2c and h2 (with tls) load, with gRPC health checks', () => {
    expect(loadConfigText(oneCluster(), 'f.yaml')).toMatchObject({ ok: true, config: { clusters: [{ protocol: 'http1' }] } });
    expect(loadConfigText(oneCluster('    protocol: h2c', '    healthCheck: { grpc: {} }'), 'f.yaml')).toMatchObject({
      ok: true,
      config: { clusters: [{ protocol: 'h2c', healthCheck: { grpc: { service: '' }, interval: 5000, timeout: 1000 } }] },
    });
    expect(loadConfigText(oneCluster('    protocol: h2', '    tls: {}', '    healthCheck: { grpc: { service: app.Greeter } }'), 'f.yaml')).toMatchObject({
      ok: true,
      config: { clusters: [{ protocol: 'h2', healthCheck: { grpc: { service: 'app.Greeter' } } }] },
    });
  });

  test('h2 needs tls and h2c refuses it', () => {
    expect(errorsOf(oneCluster('    protocol: h2'))).toEqual([
      'f.yaml:9:15: clusters.0.protocol: h2 needs tls (HTTP/2 is offered by TLS ALPN); use h2c for HTTP/2 without TLS',
    ]);
    expect(errorsOf(oneCluster('    protocol: h2c', '    tls: {}'))).toEqual(['f.yaml:9:15: clusters.0.protocol: h2c is HTTP/2 without TLS; use h2 with tls']);
    expect(errorsOf(oneCluster('    protocol: http2'))[0]).toMatch(/^f\.yaml:9:15: clusters\.0\.protocol: must be one of http1 \| h2 \| h2c/);
  });

  test('a health check has exactly one of path | grpc, and grpc needs an HTTP/2 protocol', () => {
    expect(errorsOf(oneCluster('    healthCheck: { grpc: { service: "" } }'))).toEqual([
      'f.yaml:9:20: clusters.0.healthCheck.grpc: gRPC health checks need protocol: h2c or h2 (gRPC runs over HTTP/2)',
    ]);
    expect(errorsOf(oneCluster('    protocol: h2c', '    healthCheck: { path: /healthz, grpc: {} }'))).toEqual([
      'f.yaml:10:36: clusters.0.healthCheck.grpc: only one of path | grpc may be set, "path" is already set',
    ]);
    expect(errorsOf(oneCluster('    healthCheck: { interval: 1s }'))).toEqual(['f.yaml:9:18: clusters.0.healthCheck: needs one of path | grpc']);
  });
});
