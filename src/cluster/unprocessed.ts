// HTTP/2 tells a client which requests the server never processed (RFC 9113
// §8.7): a stream reset with REFUSED_STREAM, and every stream above the
// last-stream-id of a GOAWAY. undici replays such a request once by itself
// when its body can be sent again; the error it gives up with is read here,
// so that the proxy retries the request as one whose connection failed.

import { constants } from 'node:http2';

/** undici's error for the streams a GOAWAY left out (getGoAwayError in its client-h2.js; test/upstream-h2.test.ts fails if it changes) */
const GOAWAY_MESSAGE = 'HTTP/2: "GOAWAY" frame received';

/** Did the upstream say it never processed the request this error ended? */
export function neverProcessed(err: Error): boolean {
  return (err as { http2ErrorCode?: number }).http2ErrorCode === constants.NGHTTP2_REFUSED_STREAM || err.message.startsWith(GOAWAY_MESSAGE);
}
