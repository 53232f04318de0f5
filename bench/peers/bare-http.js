// The floor for start-up time and memory at rest: a node:http server that
// answers 200 on every path, nothing else loaded.
// Usage: node bench/peers/bare-http.js LISTEN_PORT
import http from 'node:http';

const [port] = process.argv.slice(2);
http.createServer((_req, res) => res.end('ok')).listen(Number(port), '127.0.0.1');
