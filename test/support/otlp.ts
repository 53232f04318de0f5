// An OTLP/HTTP trace receiver for tests: a node:http server on 127.0.0.1
// port 0 that decodes each ExportTraceServiceRequest with a small protobuf
// reader written against opentelemetry-proto's trace.proto, common.proto and
// resource.proto (field numbers as published there).

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type AttributeValue = string | bigint | boolean | number | AttributeValue[];

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' when the span has no parent */
  parentSpanId: string;
  name: string;
  /** 2 SERVER, 3 CLIENT */
  kind: number;
  startNanos: bigint;
  endNanos: bigint;
  attributes: Record<string, AttributeValue>;
  /** 0 UNSET, 1 OK, 2 ERROR */
  statusCode: number;
  serviceName: string;
  scope: string;
}

export interface OtlpReceiver {
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** every export's headers, in order */
  readonly requests: { headers: http.IncomingHttpHeaders; spans: number }[];
  /** the status the next exports get (200 by default) */
  status: number;
  /** connections from exporters that are still open */
  readonly openConnections: () => number;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: OtlpReceiver['requests'] = [];
  const receiver = { status: 200 } as { status: number };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const batch = decodeExportRequest(Buffer.concat(chunks));
      requests.push({ headers: req.headers, spans: batch.length });
      if (receiver.status >= 200 && receiver.status < 300) spans.push(...batch);
      res.writeHead(receiver.status, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  let open = 0;
  server.on('connection', (socket) => {
    open++;
    socket.on('close', () => void open--);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    requests,
    openConnections: () => open,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  });
}

type Field = { n: number; wire: number; varint?: bigint; bytes?: Buffer };

/** The fields of one message, in order. */
function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let p = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[p++];
      if (b === undefined) throw new Error('truncated varint');
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
      shift += 7n;
    }
  };
  while (p < buf.length) {
    const key = Number(varint());
    const n = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ n, wire, varint: varint() });
    else if (wire === 1) {
      out.push({ n, wire, bytes: buf.subarray(p, p + 8) });
      p += 8;
    } else if (wire === 2) {
      const len = Number(varint());
      if (p + len > buf.length) throw new Error('truncated field');
      out.push({ n, wire, bytes: buf.subarray(p, p + len) });
      p += len;
    } else if (wire === 5) p += 4;
    else throw new Error(`unexpected wire type ${wire}`);
  }
  return out;
}

const sub = (fs: Field[], n: number): Buffer[] => fs.filter((f) => f.n === n && f.wire === 2).map((f) => f.bytes!);
const text = (fs: Field[], n: number): string => sub(fs, n)[0]?.toString('utf8') ?? '';
const hex = (fs: Field[], n: number): string => sub(fs, n)[0]?.toString('hex') ?? '';
const num = (fs: Field[], n: number): number => Number(fs.find((f) => f.n === n && f.wire === 0)?.varint ?? 0n);

function anyValue(buf: Buffer): AttributeValue {
  const f = fields(buf)[0]!;
  switch (f.n) {
    case 1:
      return f.bytes!.toString('utf8');
    case 2:
      return f.varint !== 0n;
    case 3:
      return BigInt.asIntN(64, f.varint!);
    case 4:
      return f.bytes!.readDoubleLE(0);
    case 5:
      return sub(fields(f.bytes!), 1).map(anyValue);
    default:
      throw new Error(`unexpected AnyValue field ${f.n}`);
  }
}

function attributes(list: Buffer[]): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of list) {
    const fs = fields(kv);
    out[text(fs, 1)] = anyValue(sub(fs, 2)[0]!);
  }
  return out;
}

export function decodeExportRequest(body: Buffer): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const rs of sub(fields(body), 1)) {
    const rsf = fields(rs);
    const resource = attributes(sub(fields(sub(rsf, 1)[0] ?? Buffer.alloc(0)), 1));
    for (const ss of sub(rsf, 2)) {
      const ssf = fields(ss);
      const scope = text(fields(sub(ssf, 1)[0] ?? Buffer.alloc(0)), 1);
      for (const s of sub(ssf, 2)) {
        const f = fields(s);
        const fixed = (n: number): bigint => f.find((x) => x.n === n && x.wire === 1)!.bytes!.readBigUInt64LE(0);
        const status = sub(f, 15)[0];
        spans.push({
          traceId: hex(f, 1),
          spanId: hex(f, 2),
          parentSpanId: hex(f, 4),
          name: text(f, 5),
          kind: num(f, 6),
          startNanos: fixed(7),
          endNanos: fixed(8),
          attributes: attributes(sub(f, 9)),
          statusCode: status === undefined ? 0 : num(fields(status), 3),
          serviceName: String(resource['service.name']),
          scope,
        });
      }
    }
  }
  return spans;
}
