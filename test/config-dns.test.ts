import { describe, expect, test } from 'vitest';
import { formatConfigError } from '../src/config/errors.js';
import { loadConfigText } from '../src/config/load.js';

const yaml = (...lines: string[]) => lines.join('\n') + '\n';

const LISTENERS = ['listeners:', '  - port: 15000', '    routes: [{ match: { prefix: / }, cluster: app }]'];

function errorsOf(text: string): string[] {
  const result = loadConfigText(text, 'f.yaml');
  if (result.ok) throw new Error('expected the configuration to be refused');
  return result.errors.map(formatConfigError);
}

describe('clusters[].dns', () => {
  test('resolves to the name, the port and a 5s refreshInterval by default; endpoints is then empty', () => {
    const result = loadConfigText(
      yaml(...LISTENERS, 'clusters:', '  - name: app', '    dns: { name: app.default.svc.cluster.local, port: 8080 }'),
      'f.yaml',
    );
    if (!result.ok) throw new Error(result.errors.map(formatConfigError).join('\n'));
    const cluster = result.config.clusters[0]!;
    expect(cluster.dns).toEqual({ name: 'app.default.svc.cluster.local', port: 8080, refreshInterval: 5000 });
    expect(cluster.endpoints).toEqual([]);
  });

  test('takes a refreshInterval with a unit, and static clusters have no dns', () => {
    const result = loadConfigText(
      yaml(
        ...LISTENERS,
        'clusters:',
        '  - name: app',
        '    dns: { name: localhost., port: 1, refreshInterval: 250ms }',
        '  - name: b',
        '    endpoints: [127.0.0.1:8080]',
      ),
      'f.yaml',
    );
    if (!result.ok) throw new Error(result.errors.map(formatConfigError).join('\n'));
    expect(result.config.clusters[0]!.dns).toEqual({ name: 'localhost.', port: 1, refreshInterval: 250 });
    expect(result.config.clusters[1]!.dns).toBeUndefined();
  });

  test('exactly one of endpoints | dns: both is an error at the second key, neither at the cluster', () => {
    const text = yaml(
      ...LISTENERS, //                                     1-3
      'clusters:', //                                      4
      '  - name: app', //                                  5
      '    endpoints: [127.0.0.1:8080]', //                6
      '    dns: { name: app.svc, port: 80 }', //           7
      '  - name: other', //                                8
      '    loadBalancing: random', //                      9
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:7:5: clusters.0.dns: only one of endpoints | dns may be set, "endpoints" is already set',
      'f.yaml:8:5: clusters.1: needs one of endpoints | dns',
    ]);
  });

  test('a bad name, port or refreshInterval is an error at the value', () => {
    const text = yaml(
      ...LISTENERS, //                                     1-3
      'clusters:', //                                      4
      '  - name: app', //                                  5
      '    dns:', //                                       6
      '      name: "app svc"', //                          7
      '      port: 0', //                                  8
      '      refreshInterval: 0s', //                      9
      '  - name: b', //                                    10
      `    dns: { name: ${'a'.repeat(64)}.svc, port: 80, nmae: x }`, // 11
    );
    expect(errorsOf(text)).toEqual([
      'f.yaml:7:13: clusters.0.dns.name: must be a DNS name, e.g. "app.default.svc.cluster.local"',
      'f.yaml:8:13: clusters.0.dns.port: must be at least 1',
      'f.yaml:9:24: clusters.0.dns.refreshInterval: must be greater than 0',
      'f.yaml:11:18: clusters.1.dns.name: must be a DNS name, e.g. "app.default.svc.cluster.local"',
      'f.yaml:11:98: clusters.1.dns.nmae: unknown key "nmae"',
    ]);
  });
});
