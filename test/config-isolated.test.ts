// The running proxy loads its configuration in a child process
// (src/config/load-isolated.ts): the same result as the in-process loader,
// every failure of the child reported as a configuration error, and no
// parser left in the proxy's own import graph.

import { describe, expect, test } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CONFIG_YAML } from '../src/config/default.js';
import { formatConfigError } from '../src/config/errors.js';
import { loadConfigFile, loadConfigText } from '../src/config/load.js';
import { loadConfigFileIsolated, loadConfigTextIsolated } from '../src/config/load-isolated.js';
import { tempDir } from './support/harness.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = tempDir('tandem-isolated-');

function script(name: string, body: string): string {
  const file = join(dir, name);
  writeFileSync(file, body);
  return file;
}

function errorsOf(result: Awaited<ReturnType<typeof loadConfigTextIsolated>>): string[] {
  return result.ok ? [] : result.errors.map(formatConfigError);
}

describe('loading in a child process', () => {
  test.each([
    ['the embedded default', DEFAULT_CONFIG_YAML],
    ['the demo', readFileSync(join(root, 'config/demo.yaml'), 'utf8')],
    ['the bench', readFileSync(join(root, 'bench/tandem.bench.yaml'), 'utf8')],
    ['the HTTP/2 bench', readFileSync(join(root, 'bench/tandem.h2.bench.yaml'), 'utf8')],
  ])('%s: the same Config as in process, prototypes and all', async (_name, text) => {
    const isolated = await loadConfigTextIsolated(text, 'x.yaml');
    expect(isolated.ok).toBe(true);
    // toStrictEqual compares prototypes and undefined keys: what reload's isDeepStrictEqual relies on
    expect(isolated).toStrictEqual(loadConfigText(text, 'x.yaml'));
  });

  test('an invalid file: the same errors, with file, line, column and key', async () => {
    const text = 'listeners:\n  - port: 99999\n    routes: []\nclustrs: {}\n';
    const isolated = await loadConfigTextIsolated(text, 'bad.yaml');
    expect(errorsOf(isolated)).toEqual(errorsOf(loadConfigText(text, 'bad.yaml')));
    expect(errorsOf(isolated)).toContain('bad.yaml:4:1: clustrs: unknown key "clustrs" (did you mean "clusters"?)');
  });

  test('a file: read in this process, an unreadable one named as the in-process loader names it', async () => {
    const good = join(dir, 'good.yaml');
    writeFileSync(good, DEFAULT_CONFIG_YAML);
    expect(await loadConfigFileIsolated(good)).toStrictEqual(await loadConfigFile(good));
    const missing = join(dir, 'missing.yaml');
    expect(errorsOf(await loadConfigFileIsolated(missing))).toEqual([
      `${missing}:1:1: (root): cannot read file: ENOENT: no such file or directory, open '${missing}'`,
    ]);
  });

  test('a loader that crashes: one error at the file, with what it printed', async () => {
    const crash = script('crash.mjs', "process.stderr.write('TypeError: boom\\n    at x\\n'); process.exit(3);\n");
    expect(errorsOf(await loadConfigTextIsolated('a: 1\n', 'c.yaml', crash))).toEqual([
      'c.yaml:1:1: (root): the configuration loader failed: exit code 3: TypeError: boom\n    at x',
    ]);
  });

  test('a loader killed by a signal, or answering garbage, or missing', async () => {
    const killed = script('killed.mjs', "process.kill(process.pid, 'SIGKILL');\n");
    expect(errorsOf(await loadConfigTextIsolated('a: 1\n', 'k.yaml', killed))).toEqual([
      'k.yaml:1:1: (root): the configuration loader failed: killed by SIGKILL',
    ]);
    const garbage = script('garbage.mjs', "process.stdout.write('not v8 serialized');\n");
    const [err] = errorsOf(await loadConfigTextIsolated('a: 1\n', 'g.yaml', garbage));
    expect(err).toMatch(/^g\.yaml:1:1: \(root\): the configuration loader failed: unreadable answer \(.+\)$/);
    const missing = join(dir, 'no-such-loader.js');
    const [gone] = errorsOf(await loadConfigTextIsolated('a: 1\n', 'm.yaml', missing));
    expect(gone).toMatch(/^m\.yaml:1:1: \(root\): the configuration loader failed: exit code 1: .*Cannot find module/s);
  });

  test('a loader that hangs is killed at the timeout and reported', async () => {
    const hang = script('hang.mjs', 'setInterval(() => {}, 1000);\n');
    const started = Date.now();
    expect(errorsOf(await loadConfigTextIsolated('a: 1\n', 'h.yaml', hang, 500))).toEqual([
      'h.yaml:1:1: (root): the configuration loader failed: no answer within 0.5 s',
    ]);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test('a loader that exits before reading its input does not leave the parent hanging or crashing', async () => {
    const early = script('early.mjs', 'process.exit(0);\n');
    const big = 'x'.repeat(4 * 1024 * 1024);
    const [err] = errorsOf(await loadConfigTextIsolated(big, 'e.yaml', early));
    expect(err).toMatch(/^e\.yaml:1:1: \(root\): the configuration loader failed: unreadable answer/);
  });
});

describe("the running proxy's imports", () => {
  // Static imports from dist/cli.js, followed through tandem's own files: the
  // packages reached are the ones the proxy holds for its whole life.
  function packagesReached(entry: string): Set<string> {
    const seen = new Set<string>();
    const packages = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const source = readFileSync(file, 'utf8');
      for (const m of source.matchAll(/^import\s+(?:[^'"]*?\s+from\s+)?['"]([^'"]+)['"]/gm)) {
        const spec = m[1]!;
        if (spec.startsWith('.')) visit(resolve(dirname(file), spec));
        else if (!spec.startsWith('node:')) packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
      }
    };
    visit(entry);
    return packages;
  }

  test('never include the YAML parser, the schema library or undici\'s index', () => {
    const reached = packagesReached(join(root, 'dist/cli.js'));
    expect(reached.has('pino')).toBe(true); // the walk does reach the proxy's packages
    expect(reached.has('yaml')).toBe(false);
    expect(reached.has('zod')).toBe(false);
    // undici's classes come from their own files (src/undici.ts), through require
    expect(reached.has('undici')).toBe(false);
  });

  test("the loader child is one file: its bundle imports and requires nothing but Node's own modules", () => {
    const bundle = join(root, 'dist/config/load-child.bundle.js');
    expect([...packagesReached(bundle)]).toEqual([]);
    const required = [...readFileSync(bundle, 'utf8').matchAll(/__require\("([^"]+)"\)/g)].map((m) => m[1]!);
    expect(required.length).toBeGreaterThan(0); // yaml's CommonJS files are in it
    expect(required.filter((spec) => !isBuiltin(spec))).toEqual([]);
  });
});
