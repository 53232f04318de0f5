// The gRPC upstream of the gRPC scenarios: lib/greeter.js's unary method
// answered on node:http2 by hand (a constant reply, grpc-status 0 in the
// trailers), on as many loopback ports as asked (`node bench/upstream-grpc.js 2`);
// prints `{"ports":[...]}` once all are bound, as upstream.js does. Not
// grpc-js's server: it shares the load CPU with the grpc-js load client, and
// the cheaper it is the more of that CPU the client gets.
import http2 from 'node:http2';
import { SAY_HELLO, grpcFrame } from './lib/greeter.js';

const REPLY = grpcFrame('hello bench');
const OK = { 'grpc-status': '0' };
const GRPC_HEADERS = { ':status': 200, 'content-type': 'application/grpc' };

function answer(stream, headers) {
  if (headers[':path'] !== SAY_HELLO) {
    // trailers-only, as a gRPC server answers an unknown method
    stream.respond({ ...GRPC_HEADERS, 'grpc-status': '12', 'grpc-message': 'unknown method' }, { endStream: true });
    return;
  }
  stream.resume();
  stream.on('end', () => {
    stream.respond(GRPC_HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(OK));
    stream.end(REPLY);
  });
}

function listen() {
  const server = http2.createServer();
  server.on('stream', answer);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
}

const count = Number(process.argv[2] ?? 1);
const ports = await Promise.all(Array.from({ length: count }, listen));
process.stdout.write(`${JSON.stringify({ ports })}\n`);
