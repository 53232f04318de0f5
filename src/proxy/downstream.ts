// The answer to the client, whatever protocol carries it: an HTTP/1.1
// response, an HTTP/2 stream. The stages and the upstream try write through
// it; the adapters (listener/http1.ts, listener/http2.ts) frame it.

export type Trailers = Record<string, string | string[] | undefined>;

export interface Downstream {
  /** the answer's status once its head was started, else 0 */
  readonly status: number;
  /** every byte of the answer was handed to the connection */
  readonly complete: boolean;
  /** the client's side is gone: nothing more can reach it */
  readonly closed: boolean;
  /**
   * Begins the answer with `headers` as flat name/value pairs, handed over:
   * the adapter may add to the array (callers build a fresh one per answer).
   * `close`: the client's connection ends after this answer (HTTP/1.x; an
   * HTTP/2 connection is closed by its session, not by one stream).
   */
  start(status: number, headers: string[], close: boolean): void;
  /** false: hold further bytes until `onDrain` calls back */
  write(chunk: Buffer): boolean;
  onDrain(resume: () => void): void;
  /** Ends the answer, with a last piece of body and the trailers, if any. */
  end(body?: Buffer | string, trailers?: Trailers | null): void;
  /** Cuts the answer: the client must see it incomplete, never a clean end. */
  abort(): void;
}

/** The trailers that carry a value; null when none does. */
export function presentTrailers(trailers: Trailers | null | undefined): Record<string, string | string[]> | null {
  let out: Record<string, string | string[]> | null = null;
  for (const name in trailers) {
    const v = trailers[name];
    if (v !== undefined) (out ??= {})[name] = v;
  }
  return out;
}
