import { describe, expect, it, vi } from 'vitest';
import type { CellValue } from '../src/observability/cells.js';
import { Metrics } from '../src/observability/metrics.js';

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

async function samples(m: Metrics, name: string): Promise<Sample[]> {
  const metric = m.registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`${name} is not registered`);
  return (await metric.get()).values as Sample[];
}

async function value(m: Metrics, name: string, labels: Record<string, string>, metricName = name): Promise<number | undefined> {
  const found = (await samples(m, name)).find(
    (s) => (s.metricName ?? name) === metricName && Object.entries(labels).every(([k, v]) => String(s.labels[k]) === v),
  );
  return found?.value;
}

const CONTRACT_NAMES = [
  'tandem_requests_total',
  'tandem_request_duration_seconds',
  'tandem_upstream_requests_total',
  'tandem_upstream_request_duration_seconds',
  'tandem_upstream_retries_total',
  'tandem_upstream_active_requests',
  'tandem_circuit_breaker_open',
  'tandem_circuit_breaker_rejections_total',
  'tandem_outlier_ejections_total',
  'tandem_endpoint_healthy',
  'tandem_config_reloads_total',
];

describe('Metrics', () => {
  it('renders every contract metric and the prefixed process defaults', async () => {
    const m = new Metrics();
    m.route('inbound', 'api').request(200, 0.01);
    m.cluster('app').attempt(200, 0.008);
    m.endpointHealthy('app', '127.0.0.1:8080', true);
    const text = await m.render();
    for (const name of CONTRACT_NAMES) expect(text).toContain(`# TYPE ${name} `);
    expect(text).toContain('# TYPE tandem_requests_total counter');
    expect(text).toContain('# TYPE tandem_request_duration_seconds histogram');
    expect(text).toContain('# TYPE tandem_upstream_active_requests gauge');
    expect(text).toMatch(/^tandem_process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^tandem_nodejs_heap_size_used_bytes \d/m);
    expect(text).toContain('tandem_requests_total{listener="inbound",route="api",code="200"} 1');
    expect(m.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('keeps its own registry, so two instances do not collide', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.configReload('failure');
    expect(await value(a, 'tandem_config_reloads_total', { result: 'failure' })).toBe(1);
    expect(await value(b, 'tandem_config_reloads_total', { result: 'failure' })).toBe(0);
  });

  it('counts route requests per status code and observes their duration in seconds', async () => {
    const m = new Metrics();
    const route = m.route('inbound', 'orders');
    route.request(200, 0.003);
    route.request(200, 0.004);
    route.request(503, 0.2);
    m.route('inbound', 'other').request(200, 1);

    const requests = (await samples(m, 'tandem_requests_total')).filter((s) => s.labels.route === 'orders');
    expect(requests.map((s) => [s.labels.listener, s.labels.code, s.value]).sort()).toEqual([
      ['inbound', '200', 2],
      ['inbound', '503', 1],
    ]);
    const labels = { listener: 'inbound', route: 'orders' };
    const h = 'tandem_request_duration_seconds';
    expect(await value(m, h, labels, `${h}_count`)).toBe(3);
    expect(await value(m, h, labels, `${h}_sum`)).toBeCloseTo(0.207, 9);
    expect(await value(m, h, { ...labels, le: '0.0005' }, `${h}_bucket`)).toBe(0);
    expect(await value(m, h, { ...labels, le: '0.005' }, `${h}_bucket`)).toBe(2);
    expect(await value(m, h, { ...labels, le: '0.25' }, `${h}_bucket`)).toBe(3);
    expect(await value(m, h, { ...labels, le: '30' }, `${h}_bucket`)).toBe(3);
  });

  it('binds label children once per status code, not once per request', () => {
    const m = new Metrics();
    const family = m.registry.getSingleMetric('tandem_requests_total') as unknown as CellValue;
    const labels = vi.spyOn(family, 'cell');
    const route = m.route('inbound', 'hot');
    for (let i = 0; i < 1000; i++) route.request(i % 3 === 0 ? 500 : 200, 0.001);
    expect(labels).toHaveBeenCalledTimes(2);
  });

  it('counts gRPC requests per route by status name, any unknown number as UNKNOWN', async () => {
    const m = new Metrics();
    const route = m.route('inbound', 'greeter');
    route.grpc(0);
    route.grpc(0);
    route.grpc(14);
    route.grpc(2);
    route.grpc(99);
    route.grpc(-3);
    m.route('inbound', 'no_route').grpc(12);
    const grpc = await samples(m, 'tandem_grpc_requests_total');
    expect(grpc.map((s) => [s.labels.listener, s.labels.route, s.labels.grpc_code, s.value]).sort()).toEqual([
      ['inbound', 'greeter', 'OK', 2],
      ['inbound', 'greeter', 'UNAVAILABLE', 1],
      ['inbound', 'greeter', 'UNKNOWN', 3],
      ['inbound', 'no_route', 'UNIMPLEMENTED', 1],
    ]);
    const text = await m.render();
    expect(text).toContain('# TYPE tandem_grpc_requests_total counter');
    expect(text).toContain('tandem_grpc_requests_total{listener="inbound",route="greeter",grpc_code="UNAVAILABLE"} 1');
    // a gRPC request is a request too: tandem_requests_total is the caller's to count
    expect(await value(m, 'tandem_requests_total', { route: 'greeter' })).toBeUndefined();
  });

  it('binds gRPC label children once per status name, whatever numbers arrive', () => {
    const m = new Metrics();
    const family = m.registry.getSingleMetric('tandem_grpc_requests_total') as unknown as CellValue;
    const labels = vi.spyOn(family, 'cell');
    const route = m.route('inbound', 'hot');
    for (let i = 0; i < 1000; i++) route.grpc(i % 2 === 0 ? 0 : 17 + i);
    expect(labels).toHaveBeenCalledTimes(2);
  });

  it('records attempts, retries, in-flight requests, breaker state and ejections per cluster', async () => {
    const m = new Metrics();
    const app = m.cluster('app');
    const cluster = { cluster: 'app' };
    app.attempt(200, 0.01);
    app.attempt(502, 0.002);
    app.attempt(504, 2);
    app.retry();
    app.retry();
    app.activeInc();
    app.activeInc();
    app.activeDec();
    app.breakerOpen(true);
    app.rejected('open');
    app.rejected('overflow');
    app.rejected('overflow');
    app.ejected();

    expect(await value(m, 'tandem_upstream_requests_total', { ...cluster, code: '200' })).toBe(1);
    expect(await value(m, 'tandem_upstream_requests_total', { ...cluster, code: '502' })).toBe(1);
    expect(await value(m, 'tandem_upstream_requests_total', { ...cluster, code: '504' })).toBe(1);
    const h = 'tandem_upstream_request_duration_seconds';
    expect(await value(m, h, cluster, `${h}_count`)).toBe(3);
    expect(await value(m, h, cluster, `${h}_sum`)).toBeCloseTo(2.012, 9);
    expect(await value(m, h, { ...cluster, le: '2.5' }, `${h}_bucket`)).toBe(3);
    expect(await value(m, h, { ...cluster, le: '1' }, `${h}_bucket`)).toBe(2);
    expect(await value(m, 'tandem_upstream_retries_total', cluster)).toBe(2);
    expect(await value(m, 'tandem_upstream_active_requests', cluster)).toBe(1);
    expect(await value(m, 'tandem_circuit_breaker_open', cluster)).toBe(1);
    expect(await value(m, 'tandem_circuit_breaker_rejections_total', { ...cluster, reason: 'open' })).toBe(1);
    expect(await value(m, 'tandem_circuit_breaker_rejections_total', { ...cluster, reason: 'overflow' })).toBe(2);
    expect(await value(m, 'tandem_outlier_ejections_total', cluster)).toBe(1);

    app.breakerOpen(false);
    expect(await value(m, 'tandem_circuit_breaker_open', cluster)).toBe(0);
  });

  it('exposes a bound cluster at zero, and rebinding it on reload keeps its values', async () => {
    const m = new Metrics();
    m.cluster('idle');
    const idle = { cluster: 'idle' };
    expect(await value(m, 'tandem_upstream_retries_total', idle)).toBe(0);
    expect(await value(m, 'tandem_upstream_active_requests', idle)).toBe(0);
    expect(await value(m, 'tandem_circuit_breaker_open', idle)).toBe(0);
    expect(await value(m, 'tandem_circuit_breaker_rejections_total', { ...idle, reason: 'overflow' })).toBe(0);
    expect(await value(m, 'tandem_outlier_ejections_total', idle)).toBe(0);

    const before = m.cluster('app');
    before.activeInc();
    before.retry();
    const after = m.cluster('app');
    expect(await value(m, 'tandem_upstream_active_requests', { cluster: 'app' })).toBe(1);
    expect(await value(m, 'tandem_upstream_retries_total', { cluster: 'app' })).toBe(1);
    before.activeDec();
    after.activeInc();
    expect(await value(m, 'tandem_upstream_active_requests', { cluster: 'app' })).toBe(1);
  });

  it('sets and forgets endpoint health', async () => {
    const m = new Metrics();
    m.endpointHealthy('app', '127.0.0.1:8080', true);
    m.endpointHealthy('app', '127.0.0.1:8081', true);
    m.endpointHealthy('app', '127.0.0.1:8081', false);
    expect(await value(m, 'tandem_endpoint_healthy', { cluster: 'app', endpoint: '127.0.0.1:8080' })).toBe(1);
    expect(await value(m, 'tandem_endpoint_healthy', { cluster: 'app', endpoint: '127.0.0.1:8081' })).toBe(0);
    m.endpointRemoved('app', '127.0.0.1:8081');
    expect(await value(m, 'tandem_endpoint_healthy', { cluster: 'app', endpoint: '127.0.0.1:8081' })).toBeUndefined();
    expect(await value(m, 'tandem_endpoint_healthy', { cluster: 'app', endpoint: '127.0.0.1:8080' })).toBe(1);
  });

  it('counts config reloads by result, both starting at zero', async () => {
    const m = new Metrics();
    expect(await value(m, 'tandem_config_reloads_total', { result: 'success' })).toBe(0);
    expect(await value(m, 'tandem_config_reloads_total', { result: 'failure' })).toBe(0);
    m.configReload('success');
    m.configReload('success');
    m.configReload('failure');
    expect(await value(m, 'tandem_config_reloads_total', { result: 'success' })).toBe(2);
    expect(await value(m, 'tandem_config_reloads_total', { result: 'failure' })).toBe(1);
  });
});
