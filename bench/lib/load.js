// The load generators, each a child pinned to the load CPU so it does not
// compete with the proxy under test: wrk (C, one thread) for the throughput
// and CPU-per-request runs, where the client must outrun the proxy;
// autocannon for the closed-loop runs of the chaos bench; open-loop.js for
// latency at a fixed rate; h2load (nghttp2, C, one thread) for the h2c runs
// and grpc-load.js (grpc-js) for the gRPC runs.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runPinned } from './processes.js';
import { LOAD_CPU } from './peers.js';

const autocannonJs = fileURLToPath(new URL('../../node_modules/autocannon/autocannon.js', import.meta.url));
const openLoopJs = fileURLToPath(new URL('../open-loop.js', import.meta.url));
const wrkScript = fileURLToPath(new URL('../wrk-report.lua', import.meta.url));
const grpcLoadJs = fileURLToPath(new URL('../grpc-load.js', import.meta.url));
const hasWrk = spawnSync('wrk', ['-v']).error === undefined;
const hasH2load = spawnSync('h2load', ['--version']).error === undefined;

export function wrkAvailable() {
  return hasWrk;
}

export function h2loadAvailable() {
  return hasH2load;
}

/**
 * Closed loop: `connections` clients each send the next request when the
 * previous answer arrives. Returns the success share, 2xx per second and latency in ms.
 */
export async function closedLoop({ url, connections, durationS, method = 'GET', bodyFile }) {
  const args = [autocannonJs, '--json', '--no-progress', '-c', String(connections), '-p', '1', '-d', String(durationS), '-m', method];
  if (bodyFile) args.push('-i', bodyFile, '-H', 'content-type=application/octet-stream');
  args.push(url);
  const out = await runPinned(LOAD_CPU, process.execPath, args, (durationS + 30) * 1000);
  const result = JSON.parse(out.slice(out.indexOf('{')));
  const requests = result.requests.total;
  const failures = result.errors + result.timeouts + result.non2xx;
  return {
    requests,
    failures,
    // autocannon counts responses in `requests`; socket errors and timeouts
    // are in `failures` only, so this share is, if anything, pessimistic
    successRate: requests ? (requests - failures) / requests : 0,
    rps: result['2xx'] / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
  };
}

/**
 * Closed loop as `closedLoop`, driven by wrk when it is installed (autocannon
 * otherwise, or when `generator` says so). Latency in ms, as closedLoop's.
 */
export async function throughputLoop({ generator = hasWrk ? 'wrk' : 'autocannon', ...run }) {
  if (generator === 'autocannon') return closedLoop(run);
  const { url, connections, durationS, method = 'GET', bodyFile } = run;
  const args = ['-t1', '-c', String(connections), '-d', `${durationS}s`, '-s', wrkScript, url];
  if (method !== 'GET' || bodyFile) args.push('--', method, ...(bodyFile ? [bodyFile] : []));
  const out = await runPinned(LOAD_CPU, 'wrk', args, (durationS + 30) * 1000);
  const r = JSON.parse(out.trim().split('\n').pop());
  const failures = r.connect + r.read + r.write + r.timeout + r.status;
  return {
    requests: r.requests,
    failures,
    successRate: r.requests ? (r.requests - r.status) / r.requests : 0,
    // wrk's `status` counts answers outside 2xx/3xx; the upstream sends no 3xx
    rps: (r.requests - r.status) / (r.durationUs / 1e6),
    p50Ms: r.p50Us / 1000,
    p99Ms: r.p99Us / 1000,
  };
}

/** Open loop at a fixed rate; latency in µs from each request's intended send time. */
export async function openLoop({ url, rate, durationS, connections = 64 }) {
  const out = await runPinned(LOAD_CPU, process.execPath, [openLoopJs, url, String(rate), String(durationS), String(connections)], (durationS + 30) * 1000);
  const result = JSON.parse(out.trim().split('\n').pop());
  return {
    requests: result.requests,
    rps: result.ok / (result.requests / result.rate),
    failures: result.errors,
    p50Us: result.p50Us,
    p99Us: result.p99Us,
    p999Us: result.p999Us,
  };
}

/** The `q` quantile (0..1) of ascending `sorted`. */
function quantile(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null;
}

/**
 * Closed loop over h2c: `connections` connections, each keeping `streams`
 * requests in flight, for `durationS` seconds. Returns what throughputLoop
 * returns; latency (ms) from h2load's per-request log, written into `dir`.
 */
export async function h2Loop({ url, connections, streams, durationS, dir }) {
  const logFile = join(dir, 'h2load.log');
  const args = ['-t1', '-c', String(connections), '-m', String(streams), '-D', String(durationS), `--log-file=${logFile}`, url];
  const out = await runPinned(LOAD_CPU, 'h2load', args, (durationS + 30) * 1000);
  const finished = /finished in ([\d.]+)s/.exec(out);
  const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  if (!finished || !counts) throw new Error(`unexpected h2load output: ${out.slice(-500)}`);
  const [done, succeeded, failed, timeout] = [counts[3], counts[4], counts[5], counts[7]].map(Number);
  // one line per request done in the measured time: start (µs since the epoch), status, duration (µs)
  const durations = readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((line) => Number(line.split('\t')[2])).sort((a, b) => a - b);
  return {
    requests: done,
    // h2load's `failed` holds both the answers outside 2xx/3xx and the streams that errored
    failures: failed + timeout,
    successRate: done ? succeeded / done : 0,
    rps: succeeded / Number(finished[1]),
    p50Ms: quantile(durations, 0.5) / 1000,
    p99Ms: quantile(durations, 0.99) / 1000,
  };
}

/**
 * Closed loop of gRPC unary calls (grpc-load.js): `connections` channels,
 * `streams` calls in flight on each. Returns what throughputLoop returns,
 * and the first failure's code and message when a call failed.
 */
export async function grpcLoop({ url, connections, streams, durationS }) {
  const { host } = new URL(url);
  const args = [grpcLoadJs, host, String(connections), String(connections * streams), String(durationS)];
  const out = await runPinned(LOAD_CPU, process.execPath, args, (durationS + 30) * 1000);
  const r = JSON.parse(out.trim().split('\n').pop());
  return {
    requests: r.requests,
    failures: r.failures,
    successRate: r.requests ? r.ok / r.requests : 0,
    rps: r.ok / (r.durationUs / 1e6),
    p50Ms: r.p50Us / 1000,
    p99Ms: r.p99Us / 1000,
    ...(r.firstError ? { firstError: r.firstError } : {}),
  };
}
