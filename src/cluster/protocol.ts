// How a cluster's connections speak (clusters[].protocol): HTTP/1.1, HTTP/2
// offered by TLS ALPN (h2), or HTTP/2 with prior knowledge over plain TCP
// (h2c). The pool's clients, the free retry's one-off connection and the
// health checks all take these options, so they speak alike.

import type { ConnectionOptions } from 'node:tls';
import type { Client } from 'undici';
import type { ClusterProtocol } from '../config/types.js';

/**
 * undici's own cap on the streams of one HTTP/2 connection is 100, below
 * what most servers announce; the largest stream id leaves the endpoint's
 * SETTINGS_MAX_CONCURRENT_STREAMS, which can only lower it, to decide.
 */
const ENDPOINT_DECIDES = 2 ** 31 - 1;

/** Client options with `useH2c` where Pool reads it: at the top level (Client reads it there too). */
export type ProtocolOptions = Pick<Client.Options, 'allowH2' | 'h2Options' | 'connect'> & { useH2c?: boolean };

/** `tls`: the cluster's TLS origination options, if any; `timeout`: the connect timeout in ms. */
export function protocolOptions(protocol: ClusterProtocol, tls: ConnectionOptions | undefined, timeout: number): ProtocolOptions {
  if (protocol === 'http1') return { allowH2: false, connect: { ...tls, timeout } };
  return {
    allowH2: true,
    useH2c: protocol === 'h2c',
    h2Options: { maxConcurrentStreams: ENDPOINT_DECIDES },
    // undici offers http/1.1 first unless told otherwise
    connect: { ...tls, timeout, preferH2: true },
  };
}
