// Peer: the Node floor for HTTP/2 — node:http2's core API inbound, each
// stream forwarded to one h2c upstream through an undici Pool with prior
// knowledge (useH2c), the client tandem's clusters are built on, with the
// low-level dispatch API so that trailers reach the client (gRPC's status
// travels in them). No routing, retries, metrics or logs. Its CPU per
// request is the floor for tandem's HTTP/2 path.
// Usage: node bench/peers/bare-http2.js LISTEN_PORT TARGET_URL
import http2 from 'node:http2';
import { PassThrough } from 'node:stream';
import { Pool } from 'undici';

const [port, target] = process.argv.slice(2);
const pool = new Pool(target, { allowH2: true, useH2c: true });

class Forward {
  constructor(stream, wantsTrailers) {
    this.stream = stream;
    this.wantsTrailers = wantsTrailers;
    this.trailers = null;
    this.controller = null;
    this.done = false;
    // a client that resets its stream cancels the upstream request
    stream.once('close', () => {
      if (!this.done) this.controller?.abort(new Error('client stream closed'));
    });
  }

  onRequestStart(controller) {
    this.controller = controller;
  }

  onResponseStart(controller, statusCode, headers) {
    if (statusCode < 200) return;
    headers[':status'] = statusCode;
    if (!this.wantsTrailers) {
      this.stream.respond(headers);
      return;
    }
    // trailers are known only at the end, so the answer waits for them (an empty set ends the stream with an empty DATA frame)
    this.stream.respond(headers, { waitForTrailers: true });
    this.stream.once('wantTrailers', () => this.stream.sendTrailers(this.trailers ?? {}));
  }

  onResponseData(controller, chunk) {
    if (this.stream.write(chunk)) return;
    controller.pause();
    this.stream.once('drain', () => controller.resume());
  }

  onResponseEnd(controller, trailers) {
    this.done = true;
    this.trailers = trailers;
    this.stream.end();
  }

  onResponseError(controller, err) {
    this.done = true;
    if (this.stream.destroyed) return;
    if (this.stream.headersSent) this.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    else this.stream.respond({ ':status': 502 }, { endStream: true });
  }
}

const server = http2.createServer();
server.on('stream', (stream, headers) => {
  const upstreamHeaders = {};
  for (const name of Object.keys(headers)) if (name[0] !== ':') upstreamHeaders[name] = headers[name];
  // Not the stream itself: undici destroys a body stream without autoDestroy (an Http2Stream) at its end, which would reset the client's stream before the answer.
  const body = stream.endAfterHeaders ? null : stream.pipe(new PassThrough());
  // trailers only to a client that takes them (every gRPC client says so)
  const forward = new Forward(stream, headers.te === 'trailers');
  pool.dispatch({ path: headers[':path'], method: headers[':method'], headers: upstreamHeaders, body }, forward);
});
server.listen(Number(port), '127.0.0.1');
// exit cleanly on SIGTERM, as bare-undici.js does
process.on('SIGTERM', () => process.exit(0));
