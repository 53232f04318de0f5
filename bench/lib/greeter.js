// A Greeter-like gRPC service defined by hand, shared by the bench's gRPC
// upstream, its load client and its readiness probe: one unary method whose
// request and reply each carry one string (protobuf field 1), encoded here so
// that no .proto file or code generation is needed.
export const SAY_HELLO = '/helloworld.Greeter/SayHello';

function encodeString(text) {
  const bytes = Buffer.from(text);
  const length = [];
  for (let n = bytes.length; ; n >>>= 7) {
    if (n < 0x80) {
      length.push(n);
      break;
    }
    length.push((n & 0x7f) | 0x80);
  }
  // 0x0a: field 1, wire type 2 (length-delimited)
  return Buffer.concat([Buffer.from([0x0a, ...length]), bytes]);
}

function decodeString(buffer) {
  // proto3 leaves an empty string out: an empty message is ''
  if (buffer.length === 0) return '';
  if (buffer[0] !== 0x0a) throw new Error('expected field 1 as a string');
  let length = 0;
  let offset = 1;
  for (let shift = 0; ; shift += 7) {
    const byte = buffer[offset];
    offset += 1;
    length |= (byte & 0x7f) << shift;
    if (byte < 0x80) break;
  }
  return buffer.toString('utf8', offset, offset + length);
}

/** grpc-js service definition: requests and replies are plain strings. */
export const greeterService = {
  sayHello: {
    path: SAY_HELLO,
    requestStream: false,
    responseStream: false,
    requestSerialize: encodeString,
    requestDeserialize: decodeString,
    responseSerialize: encodeString,
    responseDeserialize: decodeString,
  },
};

/** A message of one string in gRPC's length-prefixed framing (uncompressed), for ends that speak HTTP/2 directly. */
export function grpcFrame(text) {
  const message = encodeString(text);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}
