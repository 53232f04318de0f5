// The misbehaving endpoints of the chaos bench, one process, one port each:
//
//   node bench/chaos-upstream.js flaky:0.3 slow:200 healthy
//
// `flaky:P` answers 503 to a random share P of requests, `slow:MS` answers
// after MS milliseconds, `healthy` at once. A `#label` suffix names one of
// several endpoints that behave alike. `/healthz` gets the same
// treatment as any path on the slow endpoint (a slow process is slow at
// everything) but always 200 on the flaky one: the process is alive, its
// requests fail, which is what outlier detection (not health checking) is for.
// Each endpoint counts what it received; a separate stats port answers those
// counts as JSON, so the harness learns the tries tandem sent to each one.
// Prints `{"ports":[...],"statsPort":N}` once everything is bound.
import http from 'node:http';

const BODY = Buffer.from('hello from upstream\n');
const UNAVAILABLE = Buffer.from('flaky upstream says no\n');

function behaviour(spec) {
  // `slow:10#a` and `slow:10#b`: two endpoints alike, counted apart
  const [kind, arg] = spec.split('#')[0].split(':');
  if (kind === 'flaky') return { name: spec, failShare: Number(arg ?? 0.3), delayMs: 0 };
  if (kind === 'slow') return { name: spec, failShare: 0, delayMs: Number(arg ?? 200) };
  if (kind === 'healthy') return { name: spec, failShare: 0, delayMs: 0 };
  throw new Error(`unknown endpoint kind ${spec}`);
}

function newCounts() {
  // requests: tries that reached the app (health checks apart); aborted: the
  // caller gave up before the answer (tandem's per-try timeout, for one)
  return { requests: 0, ok: 0, unavailable: 0, aborted: 0, healthChecks: 0 };
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}

function handler(b, counts) {
  return (req, res) => {
    const healthCheck = req.url === '/healthz';
    if (healthCheck) counts.healthChecks += 1;
    else counts.requests += 1;
    req.resume();
    const fails = !healthCheck && Math.random() < b.failShare;
    const answer = () => {
      if (res.destroyed) return;
      if (healthCheck) return reply(res, 200, BODY);
      if (fails) {
        counts.unavailable += 1;
        return reply(res, 503, UNAVAILABLE);
      }
      counts.ok += 1;
      return reply(res, 200, BODY);
    };
    if (b.delayMs === 0) return answer();
    const timer = setTimeout(answer, b.delayMs);
    res.on('close', () => {
      if (res.writableFinished) return;
      clearTimeout(timer);
      if (!healthCheck) counts.aborted += 1;
    });
  };
}

function listen(server) {
  // Longer than tandem's pool idle timeout, so the upstream never closes a
  // connection tandem is about to reuse.
  server.keepAliveTimeout = 60_000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const endpoints = process.argv.slice(2).map(behaviour);
const counts = Object.fromEntries(endpoints.map((b) => [b.name, newCounts()]));
const ports = await Promise.all(endpoints.map((b) => listen(http.createServer(handler(b, counts[b.name])))));
const statsPort = await listen(http.createServer((req, res) => {
  req.resume();
  reply(res, 200, Buffer.from(JSON.stringify(counts)));
}));
process.stdout.write(`${JSON.stringify({ ports, statsPort })}\n`);
