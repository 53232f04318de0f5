// Fixed-rate (open-loop) client: requests leave on a schedule that does not
// wait for earlier responses, and each latency is measured from the request's
// intended send time, so a stalled proxy shows up in the tail instead of
// silently lowering the rate (coordinated omission).
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

async function send(index, intendedAt) {
  try {
    const { statusCode, body } = await pool.request({ path, method: 'GET' });
    await body.dump();
    if (statusCode >= 200 && statusCode < 300) ok += 1;
    else errors += 1;
  } catch {
    errors += 1;
  }
  if (index >= warmup) histogram.recordValue(Math.max(1, Math.round((performance.now() - intendedAt) * 1000)));
  finished += 1;
  if (finished === total) done();
}

// Timers only resolve to a millisecond, which would add up to 1 ms of
// scheduling delay to every sample; so once the next send is near, the loop
// yields with setImmediate (I/O still runs between turns) instead of sleeping.
function pump(start) {
  const now = performance.now();
  while (sent < total && start + sent * intervalMs <= now) {
    void send(sent, start + sent * intervalMs);
    sent += 1;
  }
  if (sent >= total) return;
  const wait = start + sent * intervalMs - now;
  if (wait > 2) setTimeout(pump, wait - 1.5, start);
  else setImmediate(pump, start);
}

// The spinning loop shares its CPU with the upstream: a lower priority lets
// the upstream run the moment it has work, instead of after our time slice.
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
