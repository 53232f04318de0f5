// A route's idleTimeout (docs/resilience.md#stream-idle-timeout): the exchange
// is cut once no byte went either way for that long. Only routes that set it
// pay for it: one Node timer per exchange, and a clock read per chunk instead
// of re-arming the timer per chunk. When the timer fires early because bytes
// flowed meanwhile, it is armed again for the time still left.

import { after, cancel, now, type Timer } from '../clock.js';
import { CLOCK_SLACK_MS } from './deadlines.js';

export class IdleWatch {
  /** now() of the last byte either way */
  last = now();
  private timer: Timer;

  constructor(
    private readonly ms: number,
    private readonly onIdle: () => void,
  ) {
    this.timer = after(ms, this.check);
  }

  /** A byte went one way or the other. */
  touch(): void {
    this.last = now();
  }

  stop(): void {
    cancel(this.timer);
  }

  private readonly check = (): void => {
    const left = this.last + this.ms - now();
    if (left > CLOCK_SLACK_MS) this.timer = after(left, this.check);
    else this.onIdle();
  };
}
