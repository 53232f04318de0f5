// An OTLP ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1)
// of one batch: one resource (service.name), one instrumentation scope, the
// spans.

import { ProtoWriter } from './protobuf.js';
import { key, stringAttribute, type QueuedSpan } from './spans.js';

const REQUEST_RESOURCE_SPANS = 1;
const RESOURCE_SPANS_RESOURCE = 1;
const RESOURCE_SPANS_SCOPE_SPANS = 2;
const RESOURCE_ATTRIBUTES = 1;
const SCOPE_SPANS_SCOPE = 1;
const SCOPE_SPANS_SPANS = 2;
const SCOPE_NAME = 1;

export const SCOPE = 'tandem';
const SERVICE_NAME = key('service.name');

export function encodeTraces(spans: readonly QueuedSpan[], serviceName: string): Buffer {
  const w = new ProtoWriter();
  w.begin(REQUEST_RESOURCE_SPANS);
  w.begin(RESOURCE_SPANS_RESOURCE);
  stringAttribute(w, RESOURCE_ATTRIBUTES, SERVICE_NAME, serviceName);
  w.end();
  w.begin(RESOURCE_SPANS_SCOPE_SPANS);
  w.begin(SCOPE_SPANS_SCOPE);
  w.string(SCOPE_NAME, SCOPE);
  w.end();
  for (const span of spans) {
    w.begin(SCOPE_SPANS_SPANS);
    span.encode(w);
    w.end();
  }
  w.end();
  w.end();
  return w.finish();
}
