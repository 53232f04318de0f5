// A real @grpc/grpc-js server and client for test/fixtures/echo.proto: the
// server answers as each request asks (status, delay, reply count and size)
// and records what reached it; `settle` turns any kind of client call into
// the replies, initial metadata and final status the client saw.

import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';

export interface EchoRequest {
  text?: string;
  payload?: Buffer;
  status?: number;
  delayMs?: number;
  count?: number;
  replyBytes?: number;
}

export interface EchoReply {
  text: string;
  payload: Buffer;
  index: number;
}

type Callback = grpc.requestCallback<EchoReply>;

export interface EchoClient extends grpc.Client {
  Unary(req: EchoRequest, md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback): grpc.ClientUnaryCall;
  ServerStream(req: EchoRequest, md: grpc.Metadata, opts: grpc.CallOptions): grpc.ClientReadableStream<EchoReply>;
  ClientStream(md: grpc.Metadata, opts: grpc.CallOptions, cb: Callback): grpc.ClientWritableStream<EchoRequest>;
  Bidi(md: grpc.Metadata, opts: grpc.CallOptions): grpc.ClientDuplexStream<EchoRequest, EchoReply>;
}

type EchoClientConstructor = new (target: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => EchoClient;

const definition = loadSync(fileURLToPath(new URL('../fixtures/echo.proto', import.meta.url)), { defaults: true });
const { Echo } = (grpc.loadPackageDefinition(definition) as unknown as { tandem: { test: { Echo: EchoClientConstructor & { service: grpc.ServiceDefinition } } } }).tandem.test;

/** the path prefix of every Echo method, for a route's match */
export const ECHO_PREFIX = '/tandem.test.Echo/';

/** Large enough for the 4 MiB messages the tests send both ways (grpc-js refuses more than 4 MiB by default). */
export const MESSAGE_LIMITS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
  'grpc.max_send_message_length': 8 * 1024 * 1024,
};

/** metadata every answer carries: in the head, and in the trailers (the binary value tests -bin handling) */
export const TRAILER_BIN = Buffer.from([0x00, 0xff, 0x80, 0x0a, 0x0d]);

export interface EchoSeen {
  method: string;
  metadata: grpc.Metadata;
  /** ms left until the call's deadline as it arrived, null without one */
  deadlineMs: number | null;
}

export interface EchoServer {
  port: number;
  seen: EchoSeen[];
  close(): Promise<void>;
}

/** Request metadata named x-md-... comes back in the answer's head as echo-x-md-...; the trailers carry x-trailer and x-trailer-bin. */
function initialMetadata(call: { metadata: grpc.Metadata }): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [key, values] of Object.entries(call.metadata.toJSON())) {
    if (key.startsWith('x-md-')) for (const v of values) md.add(`echo-${key}`, v);
  }
  return md;
}

function trailing(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-trailer', 'done');
  md.set('x-trailer-bin', TRAILER_BIN);
  return md;
}

function failure(req: EchoRequest): Partial<grpc.StatusObject> {
  return { code: req.status!, details: req.text!, metadata: trailing() };
}

function reply(req: EchoRequest, index: number): EchoReply {
  return { text: req.text ?? '', index, payload: req.replyBytes ? Buffer.alloc(req.replyBytes, index % 256) : (req.payload ?? Buffer.alloc(0)) };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function startEchoServer(tls?: { key: Buffer; cert: Buffer }): Promise<EchoServer> {
  const seen: EchoSeen[] = [];
  const record = (method: string, call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'metadata' | 'getDeadline' | 'sendMetadata'>): void => {
    const deadline = call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    seen.push({ method, metadata: call.metadata, deadlineMs: Number.isFinite(at) ? at - Date.now() : null });
    // without metadata to echo, an error goes back trailers-only, as grpc-js sends it
    const md = initialMetadata(call);
    if (Object.keys(md.getMap()).length > 0) call.sendMetadata(md);
  };
  const server = new grpc.Server(MESSAGE_LIMITS);
  server.addService(Echo.service, {
    async Unary(call: grpc.ServerUnaryCall<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) {
      record('Unary', call);
      if (call.request.delayMs) await sleep(call.request.delayMs);
      if (call.cancelled) return;
      if (call.request.status) callback(failure(call.request));
      else callback(null, reply(call.request, 0), trailing());
    },
    async ServerStream(call: grpc.ServerWritableStream<EchoRequest, EchoReply>) {
      record('ServerStream', call);
      for (let i = 0; i < (call.request.count ?? 0) && !call.cancelled; i++) {
        call.write(reply(call.request, i));
        if (call.request.delayMs) await sleep(call.request.delayMs);
      }
      if (call.request.status) call.emit('error', failure(call.request));
      else call.end(trailing());
    },
    ClientStream(call: grpc.ServerReadableStream<EchoRequest, EchoReply>, callback: grpc.sendUnaryData<EchoReply>) {
      record('ClientStream', call);
      const texts: string[] = [];
      let bytes = 0;
      call.on('data', (req: EchoRequest) => {
        texts.push(req.text ?? '');
        bytes += req.payload?.length ?? 0;
      });
      call.on('end', () => callback(null, { text: texts.join(','), index: bytes, payload: Buffer.alloc(0) }, trailing()));
    },
    Bidi(call: grpc.ServerDuplexStream<EchoRequest, EchoReply>) {
      record('Bidi', call);
      let n = 0;
      call.on('data', (req: EchoRequest) => {
        if (req.status) call.emit('error', failure(req));
        else call.write(reply(req, n++));
      });
      call.on('end', () => call.end(trailing()));
    },
  });
  const credentials = tls === undefined ? grpc.ServerCredentials.createInsecure() : grpc.ServerCredentials.createSsl(null, [{ private_key: tls.key, cert_chain: tls.cert }]);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, bound) => (err === null ? resolve(bound) : reject(err))),
  );
  return { port, seen, close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
}

/** A client for `target` (host:port), over TLS trusting `ca` when given, else h2c. */
export function echoClient(target: string, ca?: Buffer): EchoClient {
  const credentials = ca === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(ca);
  return new Echo(target, credentials, MESSAGE_LIMITS);
}

export interface Settled<T> {
  replies: T[];
  /** the answer's head, null when the call ended without one (trailers-only) */
  metadata: grpc.Metadata | null;
  status: grpc.StatusObject;
}

/**
 * What the client saw of `call` by the time its status came: `replies`
 * gathers streamed messages, and a unary or client-streaming call's
 * callback pushes its reply there too.
 */
export function settle<T>(call: EventEmitter, replies: T[] = []): Promise<Settled<T>> {
  let metadata: grpc.Metadata | null = null;
  call.on('metadata', (md: grpc.Metadata) => (metadata = md));
  call.on('data', (r: T) => replies.push(r));
  call.on('error', () => undefined);
  return new Promise((resolve) => call.on('status', (status: grpc.StatusObject) => resolve({ replies, metadata, status })));
}

/** A unary call's outcome. */
export function unary(client: EchoClient, req: EchoRequest, md = new grpc.Metadata(), opts: grpc.CallOptions = {}): Promise<Settled<EchoReply>> {
  const replies: EchoReply[] = [];
  return settle(
    client.Unary(req, md, opts, (_err, r) => r && replies.push(r)),
    replies,
  );
}
