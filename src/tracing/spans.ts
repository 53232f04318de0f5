// Spans in tandem's compact form: the values a span needs, copied off the
// request when it ends (never the request's objects, which would keep its
// sockets and buffers alive while the span waits in the queue). They become
// OTLP protobuf only at batch time (otlp.ts). Most attributes repeat from
// span to span (method, route, host, client address, status): each keeps
// the encoding of its last value and copies it while the value repeats.

import { isGrpcFailure } from '../proxy/grpc.js';
import { ProtoWriter } from './protobuf.js';

export interface QueuedSpan {
  /** writes the OTLP `Span` message's fields */
  encode(w: ProtoWriter): void;
}

// opentelemetry.proto.trace.v1.Span
const SPAN_TRACE_ID = 1;
const SPAN_SPAN_ID = 2;
const SPAN_PARENT_SPAN_ID = 4;
const SPAN_NAME = 5;
const SPAN_KIND = 6;
const SPAN_START = 7;
const SPAN_END = 8;
const SPAN_ATTRIBUTES = 9;
const SPAN_STATUS = 15;
const STATUS_CODE = 3;
const STATUS_ERROR = 2;
const KIND_SERVER = 2;
const KIND_CLIENT = 3;
// KeyValue, AnyValue, ArrayValue
const KV_KEY = 1;
const KV_VALUE = 2;
const ANY_STRING = 1;
const ANY_INT = 3;
const ANY_ARRAY = 5;
const ARRAY_VALUES = 1;

const NANOS_PER_MS = 1e6;
const TIME_ORIGIN = performance.timeOrigin;

/** Epoch milliseconds (fractional) of a performance.now() reading. */
export function epochMs(hr: number): number {
  return TIME_ORIGIN + hr;
}

/**
 * The encoding of a value that came twice in a row, copied while it keeps
 * coming (===). A value seen once is only remembered: values that take
 * turns (two endpoints) cost no copy each time.
 */
class Repeating<T> {
  private last: T | undefined = undefined;
  private bytes: Uint8Array | null = null;

  constructor(private readonly encode: (w: ProtoWriter, v: T) => void) {}

  write(w: ProtoWriter, v: T): void {
    if (v !== this.last) {
      this.last = v;
      this.bytes = null;
      return this.encode(w, v);
    }
    if (this.bytes !== null) return w.raw(this.bytes);
    const start = w.length;
    this.encode(w, v);
    this.bytes = w.copy(start);
  }
}

/** A KeyValue's key field, encoded once. */
export function key(name: string): Uint8Array {
  const w = new ProtoWriter(64);
  w.string(KV_KEY, name);
  return w.copy(0);
}

/** A KeyValue as field `field`: `k` from key(). */
export function stringAttribute(w: ProtoWriter, field: number, k: Uint8Array, value: string): void {
  w.begin(field);
  w.raw(k);
  w.begin(KV_VALUE);
  w.string(ANY_STRING, value);
  w.end();
  w.end();
}

function intAttribute(w: ProtoWriter, k: Uint8Array, value: number): void {
  w.begin(SPAN_ATTRIBUTES);
  w.raw(k);
  w.begin(KV_VALUE);
  w.uint(ANY_INT, value);
  w.end();
  w.end();
}

function stringsAttribute(w: ProtoWriter, k: Uint8Array, values: readonly string[]): void {
  w.begin(SPAN_ATTRIBUTES);
  w.raw(k);
  w.begin(KV_VALUE);
  w.begin(ANY_ARRAY);
  for (const v of values) {
    w.begin(ARRAY_VALUES);
    w.string(ANY_STRING, v);
    w.end();
  }
  w.end();
  w.end();
  w.end();
}

function repeatingString(name: string): Repeating<string> {
  const k = key(name);
  return new Repeating((w, v) => stringAttribute(w, SPAN_ATTRIBUTES, k, v));
}

// integers are written afresh: a varint is as short as a copy
const SERVER_ADDRESS = key('server.address');
const SERVER_PORT = key('server.port');
const STATUS = key('http.response.status_code');
const RESEND_COUNT = key('http.request.resend_count');
const REQUEST_ID = key('tandem.request_id');
const RESPONSE_FLAGS = key('tandem.response_flags');
// Each kind of span has its own, so that its values repeat among its own spans.
const server = {
  name: new Repeating<string>((w, v) => w.string(SPAN_NAME, v)),
  method: repeatingString('http.request.method'),
  path: repeatingString('url.path'),
  scheme: repeatingString('url.scheme'),
  /** server.address and server.port, from the Host header */
  host: new Repeating<string>((w, host) => {
    const { address, port } = splitHost(host);
    stringAttribute(w, SPAN_ATTRIBUTES, SERVER_ADDRESS, address);
    if (port !== null) intAttribute(w, SERVER_PORT, port);
  }),
  clientAddress: repeatingString('client.address'),
  userAgent: repeatingString('user_agent.original'),
  protocolVersion: repeatingString('network.protocol.version'),
  errorType: repeatingString('error.type'),
  route: repeatingString('tandem.route'),
  cluster: repeatingString('tandem.cluster'),
  flags: new Repeating<readonly string[]>((w, v) => stringsAttribute(w, RESPONSE_FLAGS, v)),
  rpc: rpcAttributes(),
};
const client = {
  name: new Repeating<string>((w, v) => w.string(SPAN_NAME, v)),
  method: repeatingString('http.request.method'),
  address: repeatingString('server.address'),
  errorType: repeatingString('error.type'),
  rpc: rpcAttributes(),
};

const RPC_SYSTEM = key('rpc.system');
const GRPC_STATUS = key('rpc.grpc.status_code');

/** OpenTelemetry's RPC attributes of a gRPC call, from its path (`/package.Service/Method`) and status. */
function rpcAttributes(): (w: ProtoWriter, path: string, grpcStatus: number | null) => void {
  const service = repeatingString('rpc.service');
  const method = repeatingString('rpc.method');
  return (w, path, grpcStatus) => {
    stringAttribute(w, SPAN_ATTRIBUTES, RPC_SYSTEM, 'grpc');
    const query = path.indexOf('?');
    const end = query === -1 ? path.length : query;
    const slash = path.lastIndexOf('/', end - 1);
    if (slash > 0) {
      service.write(w, path.slice(1, slash));
      method.write(w, path.slice(slash + 1, end));
    }
    if (grpcStatus !== null) intAttribute(w, GRPC_STATUS, grpcStatus);
  };
}

/** The fields every span has, before its attributes. */
function head(w: ProtoWriter, s: SpanTimes, parentId: string | null, names: Repeating<string>, name: string, kind: number): void {
  w.hexBytes(SPAN_TRACE_ID, s.traceId);
  w.hexBytes(SPAN_SPAN_ID, s.spanId);
  if (parentId !== null) w.hexBytes(SPAN_PARENT_SPAN_ID, parentId);
  names.write(w, name);
  w.uint(SPAN_KIND, kind);
  w.fixed64(SPAN_START, s.startMs * NANOS_PER_MS);
  w.fixed64(SPAN_END, s.endMs * NANOS_PER_MS);
}

function errorStatus(w: ProtoWriter): void {
  w.begin(SPAN_STATUS);
  w.uint(STATUS_CODE, STATUS_ERROR);
  w.end();
}

interface SpanTimes {
  readonly traceId: string;
  readonly spanId: string;
  /** epoch ms, fractional */
  readonly startMs: number;
  readonly endMs: number;
}

/** A request as tandem served it; named `METHOD ROUTE`, or the method alone without a route. */
export class ServerSpan implements QueuedSpan, SpanTimes {
  constructor(
    readonly traceId: string,
    readonly spanId: string,
    readonly parentId: string | null,
    readonly startMs: number,
    readonly endMs: number,
    readonly method: string,
    /** the request target as received: the query is cut at encoding */
    readonly target: string,
    readonly scheme: string,
    readonly host: string | undefined,
    readonly clientIp: string,
    readonly userAgent: string | undefined,
    readonly httpVersion: string,
    readonly status: number,
    /** tandem's error code, when tandem answered with one */
    readonly errorCode: string | null,
    readonly route: string | null,
    readonly cluster: string | null,
    readonly flags: readonly string[],
    readonly requestId: string,
    /** a gRPC call: its status, when one was sent (null otherwise) */
    readonly grpc: boolean,
    readonly grpcStatus: number | null,
  ) {}

  encode(w: ProtoWriter): void {
    // a request refused before its head was parsed has no method: OpenTelemetry
    // names such a span HTTP and gives the attribute its _OTHER value
    const method = this.method || 'HTTP';
    head(w, this, this.parentId, server.name, this.route === null ? method : `${method} ${this.route}`, KIND_SERVER);
    server.method.write(w, this.method || '_OTHER');
    const query = this.target.indexOf('?');
    server.path.write(w, query === -1 ? this.target : this.target.slice(0, query));
    server.scheme.write(w, this.scheme);
    if (this.host !== undefined) server.host.write(w, this.host);
    server.clientAddress.write(w, this.clientIp);
    if (this.userAgent !== undefined) server.userAgent.write(w, this.userAgent);
    server.protocolVersion.write(w, this.httpVersion);
    intAttribute(w, STATUS, this.status);
    const errorType = this.errorCode ?? (this.status >= 500 ? String(this.status) : null);
    if (errorType !== null) server.errorType.write(w, errorType);
    if (this.route !== null) server.route.write(w, this.route);
    if (this.cluster !== null) server.cluster.write(w, this.cluster);
    server.flags.write(w, this.flags);
    stringAttribute(w, SPAN_ATTRIBUTES, REQUEST_ID, this.requestId);
    if (this.grpc) server.rpc(w, this.target, this.grpcStatus);
    // a gRPC failure travels in a 200: the same statuses the breaker counts as the server's fault
    if (this.status >= 500 || (this.grpc && isGrpcFailure(this.grpcStatus))) errorStatus(w);
  }
}

/** One try sent upstream, named by its method as OpenTelemetry's HTTP client spans are. */
export class ClientSpan implements QueuedSpan, SpanTimes {
  constructor(
    readonly traceId: string,
    readonly spanId: string,
    readonly parentId: string,
    readonly startMs: number,
    readonly endMs: number,
    readonly method: string,
    readonly address: string,
    readonly port: number,
    readonly resendCount: number,
    /** the upstream's status; 0 when the try got none */
    readonly status: number,
    readonly errorType: string | null,
    /** a gRPC call's path (its service and method), null for other requests */
    readonly rpcPath: string | null,
    readonly grpcStatus: number | null,
  ) {}

  encode(w: ProtoWriter): void {
    head(w, this, this.parentId, client.name, this.method, KIND_CLIENT);
    client.method.write(w, this.method);
    client.address.write(w, this.address);
    intAttribute(w, SERVER_PORT, this.port);
    intAttribute(w, RESEND_COUNT, this.resendCount);
    if (this.status !== 0) intAttribute(w, STATUS, this.status);
    if (this.rpcPath !== null) client.rpc(w, this.rpcPath, this.grpcStatus);
    if (this.errorType !== null) {
      client.errorType.write(w, this.errorType);
      errorStatus(w);
    } else if (this.rpcPath !== null && isGrpcFailure(this.grpcStatus)) {
      errorStatus(w);
    }
  }
}

/** `example.com:8080` → address and port; `[::1]:80` keeps the brackets off. */
function splitHost(host: string): { address: string; port: number | null } {
  const colon = host.lastIndexOf(':');
  const bracket = host.lastIndexOf(']');
  if (colon === -1 || colon < bracket) return { address: stripBrackets(host), port: null };
  const port = Number(host.slice(colon + 1));
  return { address: stripBrackets(host.slice(0, colon)), port: Number.isInteger(port) && port >= 0 && port <= 65535 ? port : null };
}

function stripBrackets(s: string): string {
  return s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
}
