// One try against one endpoint: the undici dispatch handler. It streams the
// upstream response to the client once it commits, and otherwise reports a
// failure as a value (an Outcome) that the retry policy reads.

import type { Dispatcher } from 'undici';
import { errors } from '../undici.js';
import type { Endpoint } from '../cluster/endpoint.js';
import { UpstreamTry } from '../cluster/upstream-try.js';
import type { ReuseAware } from '../cluster/reuse-tracking-client.js';
import { neverProcessed } from '../cluster/unprocessed.js';
import type { BodyCopy } from './body-copy.js';
import type { Trailers } from './downstream.js';
import type { Exchange } from './exchange.js';
import { parseGrpcStatus } from './grpc.js';
import { buildResponseHeaders } from './headers.js';
import type { IdleWatch } from './idle-watch.js';

/** How a try ended before anything reached the client. */
export type Failure = 'connect-failure' | 'reset' | 'timeout' | 'status';

export interface AttemptOwner {
  /** the route's idle timeout, told of every byte either way */
  readonly idle: IdleWatch | null;
  /** the body is sent from a copy, whose bytes were counted once when it was read */
  readonly bodyBuffered: boolean;
  /** keeps the chunks of a streamed body as they go, when a retry may send it again */
  readonly bodyCopy: BodyCopy | null;
  /**
   * May this response status (with its `grpc-status`, for a gRPC request) be
   * retried, and is there a try left? Then it is discarded.
   */
  retriesStatus(status: number, retryAfter: string | string[] | undefined, grpcStatus: number | null): boolean;
  /** the whole request body went upstream */
  requestSent(): void;
  /** the try ended without committing a response */
  attemptFailed(attempt: Attempt, failure: Failure, status: number): void;
  /** the try's response was committed and ended: `clean` false when its body was cut */
  attemptEnded(attempt: Attempt, clean: boolean): void;
  /** the streamed request body outgrew the listener's maxBodyBytes: answer 413, end the try */
  bodyTooLarge(attempt: Attempt): void;
}

type Controller = Dispatcher.DispatchController;

export class Attempt extends UpstreamTry implements Dispatcher.DispatchHandler, ReuseAware {
  private controller: Controller | null = null;
  private cancelled: Error | null = null;
  private settled = false;
  /**
   * The upstream sent response bytes (an interim answer, or bytes its parser
   * refused): the connection was not a stale keep-alive one, so a failure
   * gets no free retry.
   */
  responded = false;
  /** set by the pool's client at dispatch (ReuseAware) */
  reusedConnection = false;
  private readonly maxBody: number;

  constructor(
    private readonly ex: Exchange,
    private readonly owner: AttemptOwner,
    endpoint: Endpoint,
  ) {
    super(ex.cluster!, endpoint);
    this.maxBody = ex.ctx.listener.config.limits.maxBodyBytes || Infinity;
  }

  /** Stops the try (client gone, timeout). Safe to call at any time, more than once. */
  cancel(reason: Error): void {
    if (this.settled) return;
    this.cancelled = reason;
    if (this.controller !== null) this.controller.abort(reason);
  }

  onRequestStart(controller: Controller): void {
    this.unqueue();
    // A request still queued for a connection cannot be aborted through
    // undici's public API: it is aborted here, as soon as it starts.
    if (this.cancelled !== null) controller.abort(this.cancelled);
    else this.controller = controller;
  }

  onBodySent(chunk: Buffer): void {
    this.owner.idle?.touch();
    if (this.owner.bodyBuffered) return;
    const ex = this.ex;
    ex.bytesIn += chunk.length;
    this.owner.bodyCopy?.keep(chunk);
    // A declared Content-Length was checked on arrival; a chunked body is
    // only known too large here, once part of it went upstream.
    if (ex.bytesIn > this.maxBody && !this.settled) this.bodyTooLarge();
  }

  /**
   * The client is answered first: cutting the try destroys the request
   * stream it reads from, and with it the client's connection. The upstream
   * sees its request aborted, never a complete oversized body.
   */
  private bodyTooLarge(): void {
    this.settled = true;
    this.cancelled = BODY_TOO_LARGE;
    this.owner.bodyTooLarge(this);
    this.controller?.abort(BODY_TOO_LARGE);
  }

  onRequestSent(): void {
    this.owner.requestSent();
  }

  onResponseStart(controller: Controller, status: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.settled) return;
    this.owner.idle?.touch();
    // undici passes any three digits on; Node would refuse to send them.
    if (status < 100 || status > 599) {
      this.responded = true;
      this.fail('reset', 502);
      controller.abort(BAD_STATUS);
      return;
    }
    // An interim answer (102, 103): the final one follows on the same request.
    if (status < 200) {
      this.responded = true;
      return;
    }
    this.answered();
    const ex = this.ex;
    // in the head only when the answer is trailers-only
    if (ex.grpc) this.grpcStatus = parseGrpcStatus(headers['grpc-status']);
    if (this.owner.retriesStatus(status, headers['retry-after'], this.grpcStatus)) {
      this.fail('status', status);
      controller.abort(new Error('retrying'));
      return;
    }
    this.committed = true;
    ex.grpcStatus = this.grpcStatus;
    ex.down.start(status, buildResponseHeaders(headers, ex.requestId, ex.route!.responseOps), ex.ctx.drain.draining);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    if (this.settled) return;
    this.owner.idle?.touch();
    this.ex.bytesOut += chunk.length;
    if (!this.ex.down.write(chunk)) {
      controller.pause();
      this.ex.down.onDrain(() => controller.resume());
    }
  }

  onResponseEnd(_controller: Controller, trailers: Trailers): void {
    if (this.settled) return;
    this.settled = true;
    if (this.ex.grpc) this.trailerStatus(trailers);
    this.ex.down.end(undefined, trailers);
    this.owner.attemptEnded(this, true);
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (this.settled) return;
    if (err instanceof errors.HTTPParserError || err instanceof errors.ResponseContentLengthMismatchError) this.responded = true;
    if (this.committed) {
      // Mid-body failure: the client must see an aborted response, never a
      // clean end on a truncated body.
      this.settled = true;
      this.failure = 'reset';
      if (this.cancelled === null) this.ex.flag('UR');
      this.ex.down.abort();
      this.owner.attemptEnded(this, false);
      return;
    }
    if (this.cancelled !== null && (this.cancelled as TimeoutReason).timeout) {
      this.fail('timeout', 504);
      return;
    }
    // A request that never started was never written, and one an HTTP/2
    // upstream refused was never processed: the application cannot have
    // seen it, whatever the error says.
    this.fail(this.controller === null || neverProcessed(err) ? 'connect-failure' : 'reset', 502);
  }

  private trailerStatus(trailers: Trailers): void {
    const status = parseGrpcStatus(trailers['grpc-status']);
    if (status !== null) this.grpcStatus = this.ex.grpcStatus = status;
  }

  private fail(failure: Failure, status: number): void {
    this.settled = true;
    this.failure = failure;
    this.owner.attemptFailed(this, failure, status);
  }
}

const BODY_TOO_LARGE = new Error('request body over maxBodyBytes');
const BAD_STATUS = new Error('upstream status outside 100-599');

/** A cancel reason that marks a timer firing, so the failure is a timeout. */
export interface TimeoutReason extends Error {
  timeout?: true;
}

export function timeoutReason(message: string): TimeoutReason {
  const e: TimeoutReason = new Error(message);
  e.timeout = true;
  return e;
}
