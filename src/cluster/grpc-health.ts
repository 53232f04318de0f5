// The gRPC health protocol (grpc.health.v1) for active health checks: one
// unary Health/Check call. Its two messages are small enough to write and
// read by hand: HealthCheckRequest { string service = 1 } and
// HealthCheckResponse { ServingStatus status = 1 }, each sent in gRPC's
// length-prefixed framing (a compressed flag byte, a 4-byte big-endian
// length, the message).

import { ProtoWriter } from '../tracing/protobuf.js';

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';

/** ServingStatus.SERVING; the other values (UNKNOWN 0, NOT_SERVING 2, SERVICE_UNKNOWN 3) are unhealthy */
export const SERVING = 1;

const FRAME_HEADER = 5;
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

/** The framed HealthCheckRequest for `service` ("" asks about the whole server, and is sent as an empty message). */
export function healthCheckRequest(service: string): Buffer {
  const writer = new ProtoWriter(16 + 3 * service.length);
  if (service !== '') writer.string(1, service);
  const message = writer.finish();
  const framed = Buffer.allocUnsafe(FRAME_HEADER + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, FRAME_HEADER);
  return framed;
}

/**
 * The status of a framed HealthCheckResponse: exactly one uncompressed
 * message (tandem asks for no compression). null when the bytes are
 * anything else. An absent status field is proto3's default, UNKNOWN (0).
 */
export function servingStatus(body: Buffer): number | null {
  if (body.length < FRAME_HEADER || body[0] !== 0 || body.readUInt32BE(1) !== body.length - FRAME_HEADER) return null;
  const reader = { buf: body, pos: FRAME_HEADER };
  let status = 0;
  while (reader.pos < body.length) {
    const tag = readVarint(reader);
    if (tag === null) return null;
    const field = Math.floor(tag / 8);
    switch (tag % 8) {
      case VARINT: {
        const value = readVarint(reader);
        if (value === null) return null;
        if (field === 1) status = value;
        break;
      }
      case FIXED64:
        reader.pos += 8;
        break;
      case LENGTH_DELIMITED: {
        const length = readVarint(reader);
        if (length === null) return null;
        reader.pos += length;
        break;
      }
      case FIXED32:
        reader.pos += 4;
        break;
      default:
        return null;
    }
  }
  return reader.pos === body.length ? status : null;
}

/** A varint of at most 10 bytes (precision as a double's); null when cut short or longer. */
function readVarint(r: { buf: Buffer; pos: number }): number | null {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10 && r.pos < r.buf.length; i++) {
    const byte = r.buf[r.pos++]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) return value;
    scale *= 0x80;
  }
  return null;
}
