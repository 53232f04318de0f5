// A protobuf writer for the few wire types tandem's OTLP spans use:
// non-negative varints, fixed64, length-delimited bytes, strings and nested
// messages. A nested message is written in place and its length prefix
// slid in front of it once it is known, so a batch is one growing buffer.

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
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.room(n);
    this.pos += this.buf.write(s, this.pos);
  }

  /** A bytes field from lowercase hex (trace and span ids). */
  hexBytes(field: number, hex: string): void {
    this.tag(field, LENGTH_DELIMITED);
    const n = hex.length >> 1;
    this.varint(n);
    this.room(n);
    this.pos += this.buf.write(hex, this.pos, 'hex');
  }

  /** Opens a nested message; the matching end() writes its length in front of it. */
  begin(field: number): void {
    this.tag(field, LENGTH_DELIMITED);
    this.open.push(this.pos);
  }

  end(): void {
    const start = this.open.pop()!;
    const length = this.pos - start;
    let size = 1;
    while (length >= 0x80 ** size) size++;
    this.room(size);
    this.buf.copyWithin(start + size, start, this.pos);
    const end = this.pos + size;
    this.pos = start;
    this.varint(length);
    this.pos = end;
  }
}
