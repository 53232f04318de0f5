// A route's idleTimeout (docs/resilience.md#stream-idle-timeout): the exchange
// is cut once no byte went either way for that long. Only routes that set it
// pay for it: one Node timer per exchange, and a clock read per chunk instead
// of re-arming the timer per chunk. When the timer fires early because bytes
// flowed meanwhile, it is armed again for the time still left.

import { CLOCK_SLACK_MS } from './deadlines.js';

export class IdleWatch {
  /** performance.now() of the last byte either way */
  last = performance.now();
  private timer: NodeJS.Timeout;

  constructor(
    private readonly ms: number,
    private readonly onIdle: () => void,
  ) {
    this.timer = setTimeout(this.check, ms);
  }

  /** A byte went one way or the other. */
  touch(): void {
    this.last = performance.now();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private readonly check = (): void => {
    const left = this.last + this.ms - performance.now();
    if (left > CLOCK_SLACK_MS) this.timer = setTimeout(this.check, left);
    else this.onIdle();
  };
}
