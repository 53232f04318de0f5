// tandem's configurations for the chaos bench, written as YAML into the run's
// temp dir and checked with `tandem validate` before tandem starts on them.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';

export const tandemCli = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

// The chaos route. Why these values:
// - perTryTimeout 150ms, below the slow endpoint's 200 ms: a try that slow is
//   cut and retried on another endpoint (~150 ms + a fast try beats waiting
//   200 ms), and the 504s it counts as make outlier detection eject the slow
//   endpoint, so after the first few it gets no traffic at all. The slow
//   endpoint is thus treated as failing for latency, on purpose: next to
//   endpoints answering in well under a millisecond, 200 ms is an outlier.
// - attempts 3 (up to 4 tries): a retry avoids the endpoint just tried, so a
//   request fails only if every one of 4 tries lands on a failing endpoint;
//   before the dead and slow endpoints are out that takes e.g. dead, flaky,
//   slow, flaky (two 30% draws); once they are out, a retry after a flaky
//   503 can only go to the healthy endpoint, so no request fails.
// - backoff 5..50 ms: short, the other endpoints are healthy and near.
// - route timeout 2s: far above the worst legitimate path (4 × 150 ms +
//   backoff), so it only ends requests that are truly stuck.
export const CHAOS_RETRIES = {
  attempts: 3,
  perTryTimeout: '150ms',
  retryOn: ['connect-failure', 'reset', '5xx'],
  backoff: { base: '5ms', max: '50ms' },
};

// - maxRetries 256: the concurrent-retry cap defaults to 3 (as Envoy's); at
//   50 connections and ~30% failing first tries far more than 3 retries are
//   in flight at once, and each retry skipped over the cap is a failed
//   request. Above the number of connections, the cap never binds here.
// - errorThresholdPercentage 50: the error-rate breaker is on so its state
//   is worth reading; with retries and outlier detection the cluster keeps
//   serving, and the breaker must stay closed (an open one answers 503 to all).
// - connectTimeout 250ms: a refused connection fails at once anyway; this
//   only bounds a port that drops SYNs.
export const CHAOS_CIRCUIT_BREAKER = { maxRetries: 256, errorThresholdPercentage: 50 };

// maxEjectionPercent 50 of 4 endpoints caps ejections at 2. The dead endpoint
// stays ejected (as well as unhealthy) until its ejection time runs out, so
// with the flaky one ejected too the slow one cannot be until then
// (`--max-ejection-percent 75` lifts that).
export const CHAOS_OUTLIER_DETECTION = { consecutive5xx: 3, baseEjectionTime: '10s', maxEjectionPercent: 50 };

// Health checks take the dead endpoint out for good (2 failed checks ≈ 2 s)
// where outlier ejection alone would let it back every baseEjectionTime.
// timeout 500ms lets the slow endpoint's 200 ms /healthz pass with room for
// a busy machine: it is alive, and must stay so. A slow endpoint marked
// unhealthy is not ejected, which frees an ejection slot under
// maxEjectionPercent, and a healthy endpoint's few per-try timeouts on a
// starved CPU can then eject it, leaving no endpoint at all (seen with 250ms).
export const CHAOS_HEALTH_CHECK = { path: '/healthz', interval: '1s', timeout: '500ms', healthyThreshold: 1, unhealthyThreshold: 2 };

function base({ dir, tag, listenPort, adminPort, cluster, retries, timeout = '2s' }) {
  return {
    admin: { address: '127.0.0.1', port: adminPort },
    accessLog: { format: 'json', path: join(dir, `${tag}-access.log`) },
    listeners: [{
      name: tag,
      address: '127.0.0.1',
      port: listenPort,
      routes: [{ name: tag, match: { prefix: '/' }, cluster: cluster.name, timeout, retries }],
    }],
    clusters: [cluster],
  };
}

const endpointList = (ports) => ports.map((port) => `127.0.0.1:${port}`);

/** The chaos cluster: endpoints in the order dead, flaky, slow, healthy. */
export function chaosConfig({ dir, listenPort, adminPort, endpointPorts, maxEjectionPercent = 50 }) {
  return base({
    dir, tag: 'chaos', listenPort, adminPort,
    retries: CHAOS_RETRIES,
    cluster: {
      name: 'chaos',
      endpoints: endpointList(endpointPorts),
      loadBalancing: 'least_request',
      connectTimeout: '250ms',
      circuitBreaker: CHAOS_CIRCUIT_BREAKER,
      outlierDetection: { ...CHAOS_OUTLIER_DETECTION, maxEjectionPercent },
      healthCheck: CHAOS_HEALTH_CHECK,
    },
  });
}

/**
 * Four healthy endpoints with every resilience feature on (`resilient`) or
 * off: no retry at all, no error-rate breaker, no outlier detection, no
 * health checks (the concurrency limits are always on, in both).
 */
export function healthyConfig({ dir, tag, listenPort, adminPort, endpointPorts, resilient }) {
  const cluster = { name: 'app', endpoints: endpointList(endpointPorts), loadBalancing: 'round_robin' };
  if (resilient) {
    cluster.circuitBreaker = { maxRetries: 256, errorThresholdPercentage: 50 };
    cluster.outlierDetection = { consecutive5xx: 5, baseEjectionTime: '10s', maxEjectionPercent: 50 };
    cluster.healthCheck = { path: '/healthz', interval: '1s', timeout: '250ms', healthyThreshold: 1, unhealthyThreshold: 2 };
  }
  const retries = resilient
    ? { attempts: 2, perTryTimeout: '1s', retryOn: ['connect-failure', 'reset', '5xx'], backoff: { base: '5ms', max: '50ms' } }
    : { attempts: 0 };
  return base({ dir, tag, listenPort, adminPort, cluster, retries });
}

/**
 * One endpoint failing half its requests, retries on 5xx up to 3 times, and
 * the cluster's retry budget `retryBudget` (absent: the default). maxRetries
 * is raised out of the way so the budget is what binds; nothing ejects or
 * breaks, so every request meets the endpoint.
 */
export function retryBudgetConfig({ dir, tag, listenPort, adminPort, endpointPorts, retryBudget }) {
  const cluster = { name: 'budget', endpoints: endpointList(endpointPorts), circuitBreaker: { maxRetries: 1024 } };
  if (retryBudget) cluster.retryBudget = retryBudget;
  const retries = { attempts: 3, retryOn: ['5xx'], backoff: { base: '5ms', max: '50ms' } };
  return base({ dir, tag, listenPort, adminPort, cluster, retries });
}

/** Writes `config` as YAML into `dir`, runs `tandem validate` on it and returns the path. */
export function writeValidated(dir, tag, config) {
  const path = join(dir, `${tag}.yaml`);
  writeFileSync(path, `# generated by bench/chaos.js\n${stringify(config)}`);
  try {
    execFileSync(process.execPath, [tandemCli, 'validate', path], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`tandem validate ${path} failed:\n${err.stdout}${err.stderr}`);
  }
  return path;
}

/**
 * The cascade of bench/README.md: the chaos cluster with the 250 ms health
 * check timeout that, on a starved CPU, took every endpoint out (the slow
 * endpoint's 200 ms /healthz leaves it 50 ms of room), with or without a
 * panic threshold. `tag` keeps each variant's files and access log apart.
 */
export function cascadeConfig({ tag, panicThreshold, ...args }) {
  const config = chaosConfig(args);
  config.accessLog.path = join(args.dir, `${tag}-access.log`);
  const cluster = config.clusters[0];
  cluster.healthCheck = { ...CHAOS_HEALTH_CHECK, timeout: '250ms' };
  if (panicThreshold > 0) cluster.panicThreshold = panicThreshold;
  return config;
}

/**
 * The latency row: endpoints that differ only in how long they take, behind
 * `loadBalancing`, without retries (every try is a request, so the client's
 * latency is the endpoint's plus tandem's).
 */
export function latencyConfig({ dir, tag, listenPort, adminPort, endpointPorts, loadBalancing }) {
  return base({
    dir, tag, listenPort, adminPort,
    retries: { attempts: 0 },
    cluster: { name: 'latency', endpoints: endpointList(endpointPorts), loadBalancing },
  });
}
