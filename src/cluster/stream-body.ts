// undici 8 reports each chunk of a stream request body to the handler's
// onBodySent on HTTP/1.1 only: on HTTP/2 it listens for them on the HTTP/2
// stream, whose 'data' is the response. tandem counts request bytes there
// (bytesIn, and maxBodyBytes for a body of unknown length), so on a cluster
// that may speak HTTP/2 a stream body goes to undici as an async iterable,
// whose every chunk both versions report, with backpressure (undici waits
// for 'drain' between writes). Ending the iteration early destroys the
// stream, as undici destroys a stream body when its request fails.

import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

/** `options` with a stream body replaced by an iterable over it; as it was otherwise. */
export function iterableBody(options: Dispatcher.DispatchOptions): Dispatcher.DispatchOptions {
  const stream = options.body;
  if (!(stream instanceof Readable)) return options;
  const chunks: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => stream[Symbol.asyncIterator]() };
  // undici takes any async iterable as a body; its types name streams only
  return { ...options, body: chunks as unknown as Readable };
}
