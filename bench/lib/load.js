// The two load generators, each a child pinned to the load CPU so it does
// not compete with the proxy under test.
import { fileURLToPath } from 'node:url';
import { runPinned } from './processes.js';
import { LOAD_CPU } from './peers.js';

const autocannonJs = fileURLToPath(new URL('../../node_modules/autocannon/autocannon.js', import.meta.url));
const openLoopJs = fileURLToPath(new URL('../open-loop.js', import.meta.url));

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
