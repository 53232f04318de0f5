// Closed-loop gRPC load: CONCURRENCY unary calls kept in flight, spread over
// CHANNELS grpc-js channels (each its own HTTP/2 connection), for DURATION_S
// seconds; every call that completes starts the next one.
// Usage: node bench/grpc-load.js HOST:PORT CHANNELS CONCURRENCY DURATION_S
// Prints one JSON line: { requests, ok, failures, durationUs, p50Us, p99Us, firstError }.
import { performance } from 'node:perf_hooks';
import grpc from '@grpc/grpc-js';
import hdr from 'hdr-histogram-js';
import { greeterService } from './lib/greeter.js';

const [target, channelsArg, concurrencyArg, durationArg] = process.argv.slice(2);
const Greeter = grpc.makeClientConstructor(greeterService, 'Greeter');
// A local subchannel pool per channel: otherwise grpc-js shares one connection between channels to the same target.
const clients = Array.from({ length: Number(channelsArg) }, () => new Greeter(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });

// Each call counts, as wrk counts every request of its run (the harness's CPU figures cover the whole run);
// only the latency leaves out the first half second: channel set-up and the client's own JIT warm-up.
const started = performance.now();
const recordFrom = started + 500;
const stopAt = started + Number(durationArg) * 1000;
let ok = 0;
let failures = 0;
let firstError = null;
let lastDone = started;

function loop(client) {
  return new Promise((resolve) => {
    const next = () => {
      if (performance.now() >= stopAt) return resolve();
      const sentAt = performance.now();
      client.sayHello('bench', (err) => {
        lastDone = performance.now();
        if (err) {
          failures += 1;
          firstError ??= `${err.code} ${err.details}`;
        } else {
          ok += 1;
          if (sentAt >= recordFrom) histogram.recordValue(Math.max(1, Math.round((lastDone - sentAt) * 1000)));
        }
        next();
      });
    };
    next();
  });
}

await Promise.all(Array.from({ length: Number(concurrencyArg) }, (_, i) => loop(clients[i % clients.length])));
for (const client of clients) client.close();
process.stdout.write(`${JSON.stringify({
  requests: ok + failures,
  ok,
  failures,
  durationUs: Math.round((lastDone - started) * 1000),
  p50Us: histogram.getValueAtPercentile(50),
  p99Us: histogram.getValueAtPercentile(99),
  firstError,
})}\n`);
