// Spans in tandem's compact form: the values a span needs, copied off the
// request when it ends (never the request's objects, which would keep its
// sockets and buffers alive while the span waits in the queue). They become
// OTLP protobuf only at batch time (otlp.ts).

import type { ProtoWriter } from './protobuf.js';

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

export function stringAttribute(w: ProtoWriter, field: number, key: string, value: string): void {
  w.begin(field);
  w.string(KV_KEY, key);
  w.begin(KV_VALUE);
  w.string(ANY_STRING, value);
  w.end();
  w.end();
}

function intAttribute(w: ProtoWriter, key: string, value: number): void {
  w.begin(SPAN_ATTRIBUTES);
  w.string(KV_KEY, key);
  w.begin(KV_VALUE);
  w.uint(ANY_INT, value);
  w.end();
  w.end();
}

function stringsAttribute(w: ProtoWriter, key: string, values: readonly string[]): void {
  w.begin(SPAN_ATTRIBUTES);
  w.string(KV_KEY, key);
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

function attribute(w: ProtoWriter, key: string, value: string | null | undefined): void {
  if (value !== null && value !== undefined) stringAttribute(w, SPAN_ATTRIBUTES, key, value);
}

/** The fields every span has, before its attributes. */
function head(w: ProtoWriter, s: SpanTimes, parentId: string | null, name: string, kind: number): void {
  w.hexBytes(SPAN_TRACE_ID, s.traceId);
  w.hexBytes(SPAN_SPAN_ID, s.spanId);
  if (parentId !== null) w.hexBytes(SPAN_PARENT_SPAN_ID, parentId);
  w.string(SPAN_NAME, name);
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
  ) {}

  encode(w: ProtoWriter): void {
    // a request refused before its head was parsed has no method: OpenTelemetry
    // names such a span HTTP and gives the attribute its _OTHER value
    const method = this.method || 'HTTP';
    head(w, this, this.parentId, this.route === null ? method : `${method} ${this.route}`, KIND_SERVER);
    attribute(w, 'http.request.method', this.method || '_OTHER');
    const query = this.target.indexOf('?');
    attribute(w, 'url.path', query === -1 ? this.target : this.target.slice(0, query));
    attribute(w, 'url.scheme', this.scheme);
    if (this.host !== undefined) {
      const { address, port } = splitHost(this.host);
      attribute(w, 'server.address', address);
      if (port !== null) intAttribute(w, 'server.port', port);
    }
    attribute(w, 'client.address', this.clientIp);
    attribute(w, 'user_agent.original', this.userAgent);
    attribute(w, 'network.protocol.version', this.httpVersion);
    intAttribute(w, 'http.response.status_code', this.status);
    const errorType = this.errorCode ?? (this.status >= 500 ? String(this.status) : null);
    attribute(w, 'error.type', errorType);
    attribute(w, 'tandem.route', this.route);
    attribute(w, 'tandem.cluster', this.cluster);
    stringsAttribute(w, 'tandem.response_flags', this.flags);
    attribute(w, 'tandem.request_id', this.requestId);
    if (this.status >= 500) errorStatus(w);
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
  ) {}

  encode(w: ProtoWriter): void {
    head(w, this, this.parentId, this.method, KIND_CLIENT);
    attribute(w, 'http.request.method', this.method);
    attribute(w, 'server.address', this.address);
    intAttribute(w, 'server.port', this.port);
    intAttribute(w, 'http.request.resend_count', this.resendCount);
    if (this.status !== 0) intAttribute(w, 'http.response.status_code', this.status);
    attribute(w, 'error.type', this.errorType);
    if (this.errorType !== null) errorStatus(w);
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
