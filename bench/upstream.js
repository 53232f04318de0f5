// The cheap upstream every peer sits in front of. One process listens on
// as many loopback ports as asked (`node bench/upstream.js 2`) and prints
// `{"ports":[...]}` once all are bound, so the harness learns them.
// `node bench/upstream.js 2 h2c` serves the same answers over h2c (HTTP/2
// with prior knowledge) for the HTTP/2 scenarios.
import http from 'node:http';
import http2 from 'node:http2';

const SMALL = Buffer.from('hello from upstream\n');
const BIG = Buffer.alloc(16 * 1024, 'x');

function handle(req, res) {
  if (req.method === 'POST' || req.method === 'PUT') {
    req.on('data', () => {});
    req.on('end', () => reply(res, SMALL));
    return;
  }
  reply(res, req.url.startsWith('/big') ? BIG : SMALL);
}

function reply(res, body) {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
}

const h2c = process.argv[3] === 'h2c';

function listen() {
  // node:http2's compatibility API takes the same handler; an HTTP/2 server has no idle timeout by default
  const server = h2c ? http2.createServer(handle) : http.createServer(handle);
  // Longer than any proxy's pool idle timeout, so the upstream never races a
  // proxy that is about to reuse a pooled connection.
  if (!h2c) server.keepAliveTimeout = 60_000;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const count = Number(process.argv[2] ?? 1);
const ports = await Promise.all(Array.from({ length: count }, listen));
process.stdout.write(`${JSON.stringify({ ports })}\n`);
