// A real Prometheus server for tests: Debian's `prometheus` package (which
// .ci/run installs) on loopback, its TSDB in a temp dir, scraping the
// targets it is given every second.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { deadPort } from './harness.js';

/** The absolute path of executable `name` on PATH, or undefined. */
export function findBinary(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

export interface PrometheusServer {
  readonly url: string;
  /** Prometheus's log so far, for failure messages */
  log(): string;
  close(): Promise<void>;
}

export interface PrometheusOptions {
  binary: string;
  /** `host:port` targets of one scrape job named `tandem` (path /metrics) */
  targets: string[];
  /** absolute paths of rule files to load */
  ruleFiles: string[];
}

/** Starts Prometheus and resolves once it answers /-/ready (at most 30 s: its start is slow on a loaded machine). */
export async function startPrometheus(opts: PrometheusOptions): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-prometheus-'));
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(
    configFile,
    [
      'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
      `rule_files: ${JSON.stringify(opts.ruleFiles)}`,
      'scrape_configs:',
      '  - job_name: tandem',
      `    static_configs: [{ targets: ${JSON.stringify(opts.targets)} }]`,
      '',
    ].join('\n'),
  );
  const port = await deadPort();
  const child: ChildProcess = spawn(
    opts.binary,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.on('close', () => {
      exited = true;
      resolve();
    }),
  );
  const close = async (): Promise<void> => {
    if (!exited) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited || Date.now() > deadline) {
      await close();
      throw new Error(`prometheus did not become ready (exited=${exited}); its log:\n${log}`);
    }
    const ready = await fetch(`${url}/-/ready`).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { url, log: () => log, close };
}

export interface ApiAnswer<T> {
  status: 'success' | 'error';
  data: T;
  errorType?: string;
  error?: string;
}

export interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}

/** GET an /api/v1 path; the answer whatever its status (an error is a value the test asserts on). */
export async function api<T>(server: PrometheusServer, path: string, params: Record<string, string | string[]> = {}): Promise<ApiAnswer<T>> {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) for (const one of [v].flat()) query.append(k, one);
  const res = await fetch(`${server.url}/api/v1/${path}?${query.toString()}`);
  return (await res.json()) as ApiAnswer<T>;
}

/** An instant query at the server's now. */
export function instantQuery(server: PrometheusServer, expr: string): Promise<ApiAnswer<{ resultType: string; result: VectorSample[] }>> {
  return api(server, 'query', { query: expr });
}
