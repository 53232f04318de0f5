// An OTLP/HTTP collector that accepts every export and keeps nothing, for
// measuring tandem with tracing on: prints `{"port":N}` once bound and, on
// SIGTERM, the spans' bytes it received to stderr.
import http from 'node:http';

let bytes = 0;
let exports = 0;
const server = http.createServer((req, res) => {
  req.on('data', (c) => void (bytes += c.length));
  req.on('end', () => {
    exports++;
    res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
    res.end();
  });
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
process.on('SIGTERM', () => {
  console.error(`otlp-sink: ${exports} exports, ${bytes} bytes`);
  process.exit(0);
});
