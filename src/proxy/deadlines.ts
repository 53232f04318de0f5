// Route and per-try timeouts without a Node timer per request. Node's
// setTimeout allocates a Timeout with its own async id, reads the loop clock
// through a binding and links it into its lists: about 2% of the
// instructions of a proxied small GET, for a timer that almost never fires.
//
// All deadlines of one duration expire in the order they were set, so each
// duration keeps a plain FIFO list and one Node timer, armed for the list's
// head. Setting and cancelling a deadline is a clock read and a few
// pointer updates. The timer fires no earlier than a setTimeout of the same
// duration would.

import { after, cancel as cancelTimer, now, type Timer } from '../clock.js';

type Fire<T> = (arg: T) => void;

export class Deadline<T = unknown> {
  prev: Deadline | null = null;
  next: Deadline | null = null;
  /** listed: not yet fired nor cancelled */
  queued = true;

  constructor(
    readonly at: number,
    private readonly fire: Fire<T>,
    private readonly arg: T,
    private readonly queue: DeadlineQueue,
  ) {}

  cancel(): void {
    if (this.queued) this.queue.remove(this as Deadline);
  }

  /** @internal the queue's timer reached it */
  expire(): void {
    this.fire(this.arg);
  }
}

// Node's timers run on the loop's clock, read once per loop turn: a timer may
// run up to about a millisecond before now() reaches its time.
export const CLOCK_SLACK_MS = 1;

/** The deadlines of one duration; routes hold theirs from config compile time. */
export class DeadlineQueue {
  private head: Deadline | null = null;
  private tail: Deadline | null = null;
  private timer: Timer | null = null;

  constructor(private readonly ms: number) {}

  add<T>(fire: Fire<T>, arg: T): Deadline<T> {
    const d = new Deadline(now() + this.ms, fire, arg, this);
    const entry = d as Deadline;
    if (this.tail === null) {
      this.head = entry;
    } else {
      this.tail.next = entry;
      entry.prev = this.tail;
    }
    this.tail = entry;
    // a later entry never expires before the head: the armed timer stays right
    if (this.timer === null) this.arm(this.ms);
    return d;
  }

  remove(d: Deadline): void {
    d.queued = false;
    if (d.prev === null) this.head = d.next;
    else d.prev.next = d.next;
    if (d.next === null) this.tail = d.prev;
    else d.next.prev = d.prev;
    d.prev = null;
    d.next = null;
  }

  private arm(ms: number): void {
    // Requests in flight keep the process alive through their sockets.
    this.timer = after(ms, this.onTimer);
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    const at = now();
    let d = this.head;
    while (d !== null && d.at <= at + CLOCK_SLACK_MS) {
      this.remove(d);
      d.expire();
      d = this.head;
    }
    // The head's own deadline, or a shorter wait when entries were cancelled in between.
    if (d !== null) this.arm(Math.max(1, Math.ceil(d.at - at)));
  };
}

const queues = new Map<number, DeadlineQueue>();

/** The shared list of `ms`-long deadlines: `add(fire, arg)` calls `fire(arg)` after `ms` unless cancelled first. */
export function deadlinesOf(ms: number): DeadlineQueue {
  let queue = queues.get(ms);
  if (queue === undefined) {
    queue = new DeadlineQueue(ms);
    queues.set(ms, queue);
  }
  return queue;
}

/** A pending deadline of either kind: when it fires (in now()'s clock), and how to call it off. */
export interface PendingDeadline {
  readonly at: number;
  cancel(): void;
}

/**
 * A deadline of a duration no route shares (a gRPC request's own
 * grpc-timeout): a Node timer of its own, cleared when cancelled. A shared
 * queue per such duration would outlive its one request, and a client picks
 * the durations.
 */
export class OwnDeadline<T> implements PendingDeadline {
  readonly at: number;
  private readonly timer: Timer;

  constructor(ms: number, fire: Fire<T>, arg: T) {
    this.at = now() + ms;
    this.timer = after(ms, () => fire(arg));
  }

  cancel(): void {
    cancelTimer(this.timer);
  }
}
