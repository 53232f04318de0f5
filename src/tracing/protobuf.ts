// A protobuf writer for the few wire types tandem's OTLP spans use:
// non-negative varints, fixed64, length-delimited bytes, strings and nested
// messages. A nested message is written in place after one byte kept for
// its length, which is enough below 128 bytes (every attribute); a longer
// one slides forward to make room. ASCII strings and hex ids are copied a
// byte at a time: Buffer's own write is a native call, slower for the short
// strings spans are made of. Bytes encoded once (an attribute's key, a
// value seen before: spans.ts) are copied in whole.

const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;

const TWO_32 = 2 ** 32;

export class ProtoWriter {
  private buf: Buffer;
  private pos = 0;
  private readonly open: number[] = [];

  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  /** The bytes written so far (a view: valid until the next write). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /** How many bytes are written so far. */
  get length(): number {
    return this.pos;
  }

  /** A copy of the bytes written since `length` was `start`. */
  copy(start: number): Uint8Array {
    // Buffer's slice() is a view: a Uint8Array of its own holds the bytes
    return new Uint8Array(this.buf.subarray(start, this.pos));
  }

  /** Bytes already encoded (by copy(), or a constant), as they are. */
  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** A non-negative integer below 2^53. */
  private varint(n: number): void {
    this.room(10);
    while (n >= 0x80) {
      this.buf[this.pos++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
  }

  uint(field: number, n: number): void {
    this.tag(field, VARINT);
    this.varint(n);
  }

  /** A fixed64 of a non-negative number below 2^64 (precision as a double's). */
  fixed64(field: number, n: number): void {
    this.tag(field, FIXED64);
    this.room(8);
    const hi = Math.floor(n / TWO_32);
    this.buf.writeUInt32LE(Math.floor(n - hi * TWO_32) >>> 0, this.pos);
    this.buf.writeUInt32LE(hi >>> 0, this.pos + 4);
    this.pos += 8;
  }

  string(field: number, s: string): void {
    this.tag(field, LENGTH_DELIMITED);
    const n = s.length;
    if (n < 0x80) {
      this.room(n + 1);
      const buf = this.buf;
      let p = this.pos + 1;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) return this.utf8(s);
        buf[p++] = c;
      }
      buf[this.pos] = n;
      this.pos = p;
      return;
    }
    this.utf8(s);
  }

  /** The length and UTF-8 bytes of `s`, after its tag. */
  private utf8(s: string): void {
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.room(n);
    this.pos += this.buf.write(s, this.pos);
  }

  /** A bytes field from lowercase hex (trace and span ids: 8 or 16 bytes, below 128). */
  hexBytes(field: number, hex: string): void {
    this.tag(field, LENGTH_DELIMITED);
    const n = hex.length >> 1;
    this.room(n + 1);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = n;
    for (let i = 0; i < 2 * n; i += 2) buf[p++] = (NIBBLE[hex.charCodeAt(i)]! << 4) | NIBBLE[hex.charCodeAt(i + 1)]!;
    this.pos = p;
  }

  /** Opens a nested message; the matching end() writes its length in front of it. */
  begin(field: number): void {
    this.tag(field, LENGTH_DELIMITED);
    this.room(1);
    this.open.push(this.pos++);
  }

  end(): void {
    const at = this.open.pop()!;
    const length = this.pos - at - 1;
    if (length < 0x80) {
      this.buf[at] = length;
      return;
    }
    let size = 2;
    while (length >= 0x80 ** size) size++;
    this.room(size - 1);
    this.buf.copyWithin(at + size, at + 1, this.pos);
    const end = this.pos + size - 1;
    this.pos = at;
    this.varint(length);
    this.pos = end;
  }
}

/** The value of each lowercase hex digit, by character code. */
const NIBBLE = new Uint8Array(128);
for (let c = 0; c < 16; c++) NIBBLE['0123456789abcdef'.charCodeAt(c)] = c;
