// Peer (d): the least a Node proxy built on undici can do per request — no
// routing, retries, metrics or logs. Its CPU per request is the ceiling for
// tandem's design.
// Usage: node bench/peers/bare-undici.js LISTEN_PORT TARGET_URL
import http from 'node:http';
import { Pool } from 'undici';

const [port, target] = process.argv.slice(2);
const pool = new Pool(target, { connections: 128 });
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding'];

http.createServer((req, res) => {
  const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
  const factory = ({ statusCode, headers }) => {
    for (const name of HOP_BY_HOP) delete headers[name];
    res.writeHead(statusCode, headers);
    return res;
  };
  pool.stream({ path: req.url, method: req.method, headers: req.headers, body }, factory, (err) => {
    if (err && !res.headersSent) res.writeHead(502).end();
  });
}).listen(Number(port), '127.0.0.1');
// exit cleanly on SIGTERM, so that --cpu-prof (bench/profile.js) writes its profile
process.on('SIGTERM', () => process.exit(0));
