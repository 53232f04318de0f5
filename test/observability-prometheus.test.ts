// The shipped dashboard (observability/grafana/tandem.json) and alert rules
// (observability/prometheus/alerts.yaml) against real parts: promtool checks
// the rules, and a real Prometheus scrapes a running tandem that served
// successes, 5xx, retries, an ejection, a breaker rejection, an unhealthy
// endpoint and a failed reload. Every panel query must return series and
// every alert rule must evaluate, so a renamed metric breaks this test
// rather than a user's dashboard.

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { Metrics } from '../src/observability/metrics.js';
import { eventually, listenerYaml, metricValue, startFromFile, startUpstream, tempDir, useCleanup } from './support/harness.js';
import { api, findBinary, instantQuery, startPrometheus, type PrometheusServer } from './support/prometheus.js';

const repoFile = (path: string): string => fileURLToPath(new URL(`../${path}`, import.meta.url));
const ALERTS_FILE = repoFile('observability/prometheus/alerts.yaml');
const ALERT_TESTS_FILE = repoFile('observability/prometheus/alerts.test.yaml');
const DASHBOARD_FILE = repoFile('observability/grafana/tandem.json');

const PROMETHEUS = findBinary('prometheus');
const PROMTOOL = findBinary('promtool');
const MISSING = "(skipped: not on PATH; .ci/run installs Debian's prometheus package)";
if (PROMETHEUS === undefined || PROMTOOL === undefined) {
  console.warn(`test/observability-prometheus: prometheus or promtool not on PATH, the real-Prometheus tests are skipped ${MISSING}`);
}

/** Grafana's range for rate(): any range holding at least two 1 s scrapes of the test's traffic. */
const RATE_INTERVAL = '1m';

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations: Record<string, string>;
}

function alertRules(): AlertRule[] {
  const doc = parseYaml(readFileSync(ALERTS_FILE, 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] };
  return doc.groups.flatMap((g) => g.rules);
}

interface Target {
  expr: string;
  refId: string;
}
interface Panel {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  type: string;
  name: string;
  datasource?: { type: string; uid: string };
  query: string | { query: string };
}
interface Dashboard {
  panels: Panel[];
  templating: { list: Variable[] };
}

function dashboard(): Dashboard {
  return JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
}

/** Every panel but rows, those inside collapsed rows included. */
function panelsOf(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => (p.type === 'row' ? (p.panels ?? []) : [p]));
}

/** Replaces Grafana's `$name` / `${name}` variables; an unknown one is an error. */
function substitute(expr: string, values: Map<string, string>): string {
  return expr.replace(/\$\{(\w+)\}|\$(\w+)/g, (_m, braced: string | undefined, bare: string | undefined) => {
    const name = (braced ?? bare)!;
    if (name === '__rate_interval') return RATE_INTERVAL;
    const value = values.get(name);
    if (value === undefined) throw new Error(`unknown dashboard variable $${name} in ${expr}`);
    return value;
  });
}

/** A multi-value variable as Grafana puts it in a regex matcher: `(a|b)`, each value escaped. */
function regexOf(values: string[]): string {
  return `(${values.map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\\\$&')).join('|')})`;
}

/** Metric names tandem exposes (sample lines, so histogram series carry `_bucket`, `_sum`, `_count`). */
async function exposedNames(adminUrl: string): Promise<Set<string>> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
  }
  return names;
}

describe.skipIf(PROMTOOL === undefined)(`promtool ${PROMTOOL === undefined ? MISSING : PROMTOOL}`, () => {
  it('check rules accepts observability/prometheus/alerts.yaml', () => {
    const run = spawnSync(PROMTOOL!, ['check', 'rules', ALERTS_FILE], { encoding: 'utf8', timeout: 20_000 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(`SUCCESS: ${alertRules().length} rules found`);
  });

  it('test rules passes the unit tests of every alert (thresholds, `for`, labels, annotations)', () => {
    const run = spawnSync(PROMTOOL!, ['test', 'rules', ALERT_TESTS_FILE], { encoding: 'utf8', timeout: 20_000 });
    expect(run.stdout + run.stderr).toContain('SUCCESS');
    expect(run.status).toBe(0);
    const tested = new Set([...readFileSync(ALERT_TESTS_FILE, 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1]));
    expect([...tested].sort()).toEqual(alertRules().map((r) => r.alert).sort());
  });
});

describe('the shipped files', () => {
  it('every alert has a summary, a description and a severity', () => {
    const rules = alertRules();
    expect(rules.map((r) => r.alert)).toEqual([
      'TandemHigh5xxShare',
      'TandemCircuitBreakerOpen',
      'TandemNoHealthyEndpoint',
      'TandemConfigReloadFailed',
      'TandemRetryBudgetExhausted',
      'TandemRestarting',
    ]);
    for (const r of rules) {
      expect(r.annotations.summary, r.alert).toMatch(/\S/);
      expect(r.annotations.description, r.alert).toMatch(/\S/);
      expect(['warning', 'critical'], r.alert).toContain(r.labels?.severity);
    }
  });

  it('docs/observability.md lists every metric tandem registers (the process metrics as a family)', async () => {
    const docs = readFileSync(repoFile('docs/observability.md'), 'utf8');
    const own = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => !/^tandem_(process|nodejs)_/.test(n));
    expect(own.length).toBeGreaterThanOrEqual(11);
    for (const name of own) expect(docs, name).toContain(`| \`${name}\` |`);
  });

  it('every alert links a runbook section of docs/observability.md that exists', () => {
    const anchors = new Set(
      readFileSync(repoFile('docs/observability.md'), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('#'))
        // GitHub's heading anchors: lowercase, punctuation dropped, spaces to dashes
        .map((l) => l.replace(/^#+\s*/, '').toLowerCase().replace(/[^\w\s-]/g, '').replace(/\s/g, '-')),
    );
    for (const r of alertRules()) {
      expect(r.annotations.runbook_url, r.alert).toBe(`docs/observability.md#${r.alert.toLowerCase()}`);
      expect(anchors, r.alert).toContain(r.alert.toLowerCase());
    }
  });

  it('every panel queries the ${datasource} variable, a Prometheus data source', () => {
    const d = dashboard();
    const ds = d.templating.list.find((v) => v.name === 'datasource');
    expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
    const panels = panelsOf(d);
    expect(panels.length).toBeGreaterThanOrEqual(15);
    for (const p of panels) {
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }
    expect(d.templating.list.map((v) => v.name)).toEqual(['datasource', 'instance', 'listener', 'route', 'cluster']);
    for (const v of d.templating.list.filter((x) => x.type === 'query')) {
      expect(v.datasource, v.name).toEqual({ type: 'prometheus', uid: '${datasource}' });
    }
  });
});

describe.skipIf(PROMETHEUS === undefined)(`a real Prometheus ${PROMETHEUS === undefined ? MISSING : PROMETHEUS} scraping tandem`, () => {
  const cleanup = useCleanup();

  it('returns series for every dashboard panel query and evaluates every alert rule', async () => {
    const good = cleanup.add(await startUpstream());
    const failing = (): ReturnType<typeof startUpstream> =>
      startUpstream((_req, res) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('boom');
      });
    const bad1 = cleanup.add(await failing());
    const bad2 = cleanup.add(await failing());
    const sick = cleanup.add(
      await startUpstream((req, res) => {
        res.writeHead(req.url === '/healthz' ? 503 : 200);
        res.end();
      }),
    );

    const dir = tempDir('tandem-prometheus-test-');
    const file = join(dir, 'tandem.yaml');
    const routes = `      - { name: ok, match: { prefix: /ok }, cluster: app }
      - name: flaky
        match: { prefix: /flaky }
        cluster: flaky
        retries: { attempts: 1, retryOn: [5xx], backoff: { base: 1ms, max: 1ms } }
      - { name: down, match: { prefix: /down }, cluster: down }`;
    const clusters = `  - name: app
    endpoints: [127.0.0.1:${good.port}]
    healthCheck: { path: /healthz, interval: 100ms }
  - name: flaky
    endpoints: [127.0.0.1:${bad1.port}, 127.0.0.1:${bad2.port}]
    outlierDetection: { consecutive5xx: 2, baseEjectionTime: 1m }
    circuitBreaker: { errorThresholdPercentage: 50, volumeThreshold: 4, window: 10s, resetTimeout: 1m }
  - name: down
    endpoints: [127.0.0.1:${sick.port}]
    healthCheck: { path: /healthz, interval: 100ms, unhealthyThreshold: 1 }`;
    const config = listenerYaml('{ format: off }', routes, clusters);
    writeFileSync(file, config);
    const tandem = await startFromFile(file, (t) => cleanup.add(t));
    // POST /reload below is the one reload: the watcher must not race it
    tandem['reloader']!.unwatch();
    const url = `http://127.0.0.1:${tandem.listeners[0]!.port}`;
    const admin = `http://127.0.0.1:${tandem.adminPort}`;

    const prom = cleanup.add(
      await startPrometheus({ binary: PROMETHEUS!, targets: [`127.0.0.1:${tandem.adminPort}`], ruleFiles: [ALERTS_FILE] }),
    );
    const lastScrape = await scrapes(prom);
    // Before any traffic: the counters' first samples precede their increments, so rates are real.
    await lastScrape.after(Date.now());

    const status = async (path: string): Promise<{ status: number; error: string | null }> => {
      const res = await fetch(`${url}${path}`);
      await res.arrayBuffer();
      return { status: res.status, error: res.headers.get('x-tandem-error') };
    };
    for (let i = 0; i < 5; i++) expect(await status('/ok')).toEqual({ status: 200, error: null });
    // The app's 500 comes back after one retry; the breaker opens and refuses.
    expect(await status('/flaky')).toEqual({ status: 500, error: null });
    const refused = await eventually(async () => (await status('/flaky')).error === 'circuit_open', 5000);
    expect(refused).toBe(true);
    expect(await eventually(async () => (await metricValue(admin, 'tandem_endpoint_healthy', { cluster: 'down' })) === 0)).toBe(true);
    expect(await status('/down')).toEqual({ status: 503, error: 'no_healthy_upstream' });
    writeFileSync(file, config.replace('cluster: app }', 'cluster: nowhere }'));
    expect((await fetch(`${admin}/reload`, { method: 'POST' })).status).toBe(400);

    // What the panels must show happened in tandem.
    expect(await metricValue(admin, 'tandem_upstream_retries_total', { cluster: 'flaky' })).toBeGreaterThan(0);
    expect(await metricValue(admin, 'tandem_outlier_ejections_total', { cluster: 'flaky' })).toBe(1);
    expect(await metricValue(admin, 'tandem_circuit_breaker_rejections_total', { cluster: 'flaky', reason: 'open' })).toBeGreaterThan(0);
    expect(await metricValue(admin, 'tandem_config_reloads_total', { result: 'failure' })).toBe(1);

    // A second wave after a scrape, so the series the first wave created have a rate too.
    await lastScrape.after(Date.now());
    for (let i = 0; i < 5; i++) expect(await status('/ok')).toEqual({ status: 200, error: null });
    const trafficDone = Date.now();
    await lastScrape.after(await lastScrape.after(trafficDone));
    const evaluated = await rulesEvaluatedAfter(prom, Date.now());

    // Every rule loaded into Prometheus and evaluates without error.
    expect(evaluated.map((r) => r.name).sort()).toEqual(alertRules().map((r) => r.alert).sort());
    for (const r of evaluated) expect({ rule: r.name, health: r.health, lastError: r.lastError ?? '' }).toEqual({ rule: r.name, health: 'ok', lastError: '' });

    // Dashboard variables: label_values() as Grafana runs it, each with real values.
    const d = dashboard();
    const values = new Map<string, string>();
    const seen = new Map<string, string[]>();
    for (const v of d.templating.list) {
      if (v.type !== 'query') continue;
      const query = typeof v.query === 'string' ? v.query : v.query.query;
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(query);
      expect(m, `variable ${v.name}: ${query}`).not.toBeNull();
      const answer = await api<string[]>(prom, `label/${m![2]}/values`, { 'match[]': substitute(m![1]!, values) });
      expect(answer.status, `variable ${v.name}: ${answer.error}`).toBe('success');
      expect(answer.data.length, `variable ${v.name} has no values: ${query}`).toBeGreaterThan(0);
      seen.set(v.name, answer.data);
      values.set(v.name, regexOf(answer.data));
    }
    expect(seen.get('listener')).toEqual(['inbound']);
    expect(seen.get('route')).toEqual(['down', 'flaky', 'ok']);
    expect(seen.get('cluster')).toEqual(['app', 'down', 'flaky']);

    // Every panel query: no error, at least one series.
    const problems: string[] = [];
    let queries = 0;
    for (const p of panelsOf(d)) {
      for (const t of p.targets ?? []) {
        const expr = substitute(t.expr, values);
        const answer = await instantQuery(prom, expr);
        queries++;
        if (answer.status !== 'success') problems.push(`${p.title} [${t.refId}]: ${answer.error} in ${expr}`);
        else if (answer.data.result.length === 0) problems.push(`${p.title} [${t.refId}]: no series for ${expr}`);
      }
    }
    expect(problems).toEqual([]);
    expect(queries).toBeGreaterThanOrEqual(20);
    // The rates are measured, not zeros from series that merely exist.
    const rate = await instantQuery(prom, substitute(panelsOf(d).find((p) => p.title === 'Request rate')!.targets![0]!.expr, values));
    const okRate = rate.data.result.find((s) => s.metric.route === 'ok');
    expect(Number(okRate?.value[1])).toBeGreaterThan(0);

    // Every alert expression: it parses and runs; one that is quiet here
    // must still name only metrics tandem exposes.
    const names = await exposedNames(admin);
    const firing = new Set<string>();
    for (const r of alertRules()) {
      const answer = await instantQuery(prom, r.expr);
      expect({ alert: r.alert, status: answer.status, error: answer.error }).toEqual({ alert: r.alert, status: 'success', error: undefined });
      for (const s of answer.data.result) firing.add(`${r.alert}/${s.metric.cluster ?? ''}`);
      if (answer.data.result.length === 0) {
        for (const name of r.expr.match(/\btandem_[a-z0-9_]+/g) ?? []) expect(names, `${r.alert} names ${name}`).toContain(name);
      }
    }
    expect([...firing].sort()).toEqual(['TandemCircuitBreakerOpen/flaky', 'TandemConfigReloadFailed/', 'TandemNoHealthyEndpoint/down']);
    // Prometheus's own rule evaluation agrees.
    const alerts = await api<{ alerts: { labels: Record<string, string>; state: string }[] }>(prom, 'alerts');
    const active = alerts.data.alerts.map((a) => `${a.labels.alertname}/${a.labels.cluster ?? ''}`).sort();
    expect(active).toEqual([...firing].sort());
  }, 60_000);
});

interface Scrapes {
  /** resolves with the start (ms) of the first completed scrape that began after `t` */
  after(t: number): Promise<number>;
}

/** Follows the single target's scrapes through /api/v1/targets; a target that is not up fails the test. */
async function scrapes(prom: PrometheusServer): Promise<Scrapes> {
  return {
    async after(t) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const answer = await api<{ activeTargets: { health: string; lastScrape: string; lastError: string }[] }>(prom, 'targets');
        const target = answer.data.activeTargets[0];
        const at = target === undefined ? 0 : Date.parse(target.lastScrape);
        if (target !== undefined && at > t) {
          expect({ health: target.health, lastError: target.lastError }).toEqual({ health: 'up', lastError: '' });
          return at;
        }
        if (Date.now() > deadline) throw new Error(`no scrape after ${new Date(t).toISOString()}; prometheus log:\n${prom.log()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
  };
}

interface RuleState {
  name: string;
  health: string;
  lastError?: string;
  lastEvaluation: string;
}

/** The loaded rules once every one has been evaluated after `t`. */
async function rulesEvaluatedAfter(prom: PrometheusServer, t: number): Promise<RuleState[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const answer = await api<{ groups: { rules: RuleState[] }[] }>(prom, 'rules');
    const rules = answer.data.groups.flatMap((g) => g.rules);
    if (rules.length > 0 && rules.every((r) => Date.parse(r.lastEvaluation) > t)) return rules;
    if (Date.now() > deadline) throw new Error(`rules not evaluated after ${new Date(t).toISOString()}: ${JSON.stringify(rules)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
