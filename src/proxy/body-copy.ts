// A copy of a streamed request body, taken chunk by chunk as it goes
// upstream, so a retry can send the body again. For a gRPC request, whose
// body has no length to decide on up front (HTTP/2 clients send none) and
// may be a stream the client keeps open while it waits for answers: holding
// it back until it ended, as a body of known length is, could wait forever.

export class BodyCopy {
  /** null once the body outgrew the limit: it cannot be sent again */
  private chunks: Buffer[] | null = [];
  private bytes = 0;

  constructor(private readonly limit: number) {}

  keep(chunk: Buffer): void {
    if (this.chunks === null) return;
    this.bytes += chunk.length;
    if (this.bytes > this.limit) this.chunks = null;
    else this.chunks.push(chunk);
  }

  /** The whole body, once it went upstream entirely; null when it was over the limit. */
  whole(): Buffer | null {
    return this.chunks === null ? null : Buffer.concat(this.chunks, this.bytes);
  }
}
