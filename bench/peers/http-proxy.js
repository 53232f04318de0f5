// Peer (c): the classic Node reverse proxy, http-proxy, with a keep-alive
// agent so it is not penalised for opening a connection per request.
// Usage: node bench/peers/http-proxy.js LISTEN_PORT TARGET_URL
import http from 'node:http';
import httpProxy from 'http-proxy';

const [port, target] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
const proxy = httpProxy.createProxyServer({ target, agent });
proxy.on('error', (_err, _req, res) => {
  if (!res.headersSent) res.writeHead(502);
  res.end();
});
http.createServer((req, res) => proxy.web(req, res)).listen(Number(port), '127.0.0.1');
