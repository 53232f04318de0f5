// Run by `npm install` / `npm ci` (postinstall). undici 8 loses the part of
// an HTTP/2 response body still buffered when the response's trailers
// arrive: its trailers handler removes the stream's 'data' listener, so
// whatever a paused (slow) reader had not taken yet is dropped and the
// response ends cleanly, short. A gRPC stream to a slow client is cut
// silently. The one line that removes the listener is taken out here until
// undici ships a fix (docs/grpc.md#flow-control); the 'end' and 'close'
// handlers still complete the response, with its trailers, after the last
// byte. Fails loudly when the file no longer looks as expected.

import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

// the undici tandem itself resolves, nested under tandem or hoisted beside it
let main;
try {
  main = createRequire(import.meta.url).resolve('undici');
} catch {
  process.exit(0); // undici not installed (nothing to patch)
}
const file = join(dirname(main), 'lib/dispatcher/client-h2.js');

const before = "  stream.off('trailers', onTrailers)\n  stream.off('data', onData)\n\n  if (request.aborted || request.completed) {";
const after = "  stream.off('trailers', onTrailers)\n\n  if (request.aborted || request.completed) {";
const text = readFileSync(file, 'utf8');
if (text.includes(before)) {
  writeFileSync(file, text.replace(before, after));
  console.log('patched undici: HTTP/2 response bodies are no longer cut when trailers arrive during backpressure');
} else if (!text.includes(after)) {
  console.error(`scripts/patch-undici.mjs: ${file} changed; check whether undici still drops buffered HTTP/2 data on trailers and update or remove this patch`);
  process.exit(1);
}
