// undici's Pool, Client, errors and request(), from their own files. The
// package's index also loads fetch, WebSocket, EventSource, the cache and
// the mock agents (109 modules, with the built-ins they pull in): about
// 6 MiB of tandem's RSS at rest, 3.5 MiB at its peak under load, for code
// the proxy never runs. test/undici-internals.test.ts checks that these are
// the very objects the index exports and installs, so an undici release
// that moves them fails the tests instead of tandem at run time.
import { createRequire } from 'node:module';
import type * as undici from 'undici';

const require = createRequire(import.meta.url);

export const Pool: typeof undici.Pool = require('undici/lib/dispatcher/pool.js');
export type Pool = undici.Pool;
export const Client: typeof undici.Client = require('undici/lib/dispatcher/client.js');
export type Client = undici.Client;
export const errors: typeof undici.errors = require('undici/lib/core/errors.js');

/** The getter through which undici's Pool asks a Client whether its connection is open (and not connecting). */
export const kConnected: symbol = (require('undici/lib/core/symbols.js') as { kConnected: symbol }).kConnected;

const requestOn: (this: undici.Dispatcher, options: undici.Dispatcher.RequestOptions) => Promise<undici.Dispatcher.ResponseData> =
  require('undici/lib/api/api-request.js');

/**
 * `dispatcher.request(options)`: the index adds request() and its siblings
 * to every dispatcher's prototype, so without it a Pool or Client has only
 * dispatch().
 */
export function request(dispatcher: undici.Dispatcher, options: undici.Dispatcher.RequestOptions): Promise<undici.Dispatcher.ResponseData> {
  return requestOn.call(dispatcher, options);
}
