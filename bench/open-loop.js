// Fixed-rate (open-loop) client: requests leave on a schedule that does not
// wait for earlier responses (a stalled proxy cannot slow the sender, so its
// stall shows up in the tail: no coordinated omission). Each latency runs
// from the moment the request is handed to the connection pool, so a
// request waiting for a free connection is counted, while the client's own
// timer lateness (up to a millisecond, the same for every peer) is not.
// Usage: node bench/open-loop.js URL RATE DURATION_S [CONNECTIONS]
// Prints one JSON line: { requests, ok, errors, rate, p50Us, p99Us, p999Us, maxUs }.
import { setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import hdr from 'hdr-histogram-js';

const [url, rateArg, durationArg, connectionsArg] = process.argv.slice(2);
const rate = Number(rateArg);
const durationS = Number(durationArg);
const { origin, pathname, search } = new URL(url);
const path = pathname + search;
const pool = new Pool(origin, { connections: Number(connectionsArg ?? 64), pipelining: 1 });

const histogram = hdr.build({
  lowestDiscernibleValue: 1,
  highestTrackableValue: 60_000_000,
  numberOfSignificantValueDigits: 3,
});
// The first half second is sent but not recorded: it pays for connection
// setup and JIT compilation, which are not what this run measures.
const warmup = Math.round(rate * 0.5);
const total = warmup + Math.round(rate * durationS);
const intervalMs = 1000 / rate;
let sent = 0;
let finished = 0;
let ok = 0;
let errors = 0;

async function send(index) {
  const sentAt = performance.now();
  try {
    const { statusCode, body } = await pool.request({ path, method: 'GET' });
    await body.dump();
    if (statusCode >= 200 && statusCode < 300) ok += 1;
    else errors += 1;
  } catch {
    errors += 1;
  }
  if (index >= warmup) histogram.recordValue(Math.max(1, Math.round((performance.now() - sentAt) * 1000)));
  finished += 1;
  if (finished === total) done();
}

// Sends what is due, then sleeps until the next send. No busy-waiting: a
// spinning client would take the CPU it shares with the upstream and add
// scheduler delays of milliseconds to every peer's tail.
function pump(start) {
  const now = performance.now();
  while (sent < total && start + sent * intervalMs <= now) {
    void send(sent);
    sent += 1;
  }
  if (sent >= total) return;
  setTimeout(pump, Math.max(0, start + sent * intervalMs - now), start);
}

// A lower priority lets the upstream, on the same CPU, run first.
setPriority(10);
const startedAt = performance.now();
const deadline = setTimeout(done, (total / rate) * 1000 + 10_000);

function done() {
  clearTimeout(deadline);
  const elapsedS = (performance.now() - startedAt) / 1000;
  const result = {
    requests: finished,
    ok,
    errors: errors + (total - finished),
    rate: finished / elapsedS,
    p50Us: histogram.getValueAtPercentile(50),
    p99Us: histogram.getValueAtPercentile(99),
    p999Us: histogram.getValueAtPercentile(99.9),
    maxUs: histogram.maxValue,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  void pool.destroy().finally(() => process.exit(0));
}

pump(startedAt);
