import type { Endpoint } from './endpoint.js';

/**
 * A cluster's panic threshold (Envoy's healthy_panic_threshold): while fewer
 * than `threshold` percent of its endpoints are healthy and not ejected,
 * every endpoint is eligible again, health and ejection ignored, since
 * spreading the load over all of them beats refusing every request with
 * 503 no_healthy_upstream. The decision is taken when an endpoint's flags
 * change (and when the list changes), and written into each endpoint's
 * `available` field, so a pick reads one field whatever the threshold.
 */
export class PanicThreshold {
  private endpoints: readonly Endpoint[] = [];
  private panicking = false;

  /** `onChange` hears each entry into and exit from panic. */
  constructor(
    private readonly threshold: number,
    private readonly onChange: (panicking: boolean) => void,
  ) {}

  get active(): boolean {
    return this.panicking;
  }

  /** Follows the cluster's endpoint list. */
  follow(endpoints: readonly Endpoint[]): void {
    this.endpoints = endpoints;
    this.recount();
  }

  /** An endpoint's healthy or ejected flag changed. */
  recount(): void {
    let inRotation = 0;
    for (const endpoint of this.endpoints) if (endpoint.inRotation) inRotation++;
    const panicking = inRotation * 100 < this.threshold * this.endpoints.length;
    for (const endpoint of this.endpoints) endpoint.refresh(panicking);
    if (panicking === this.panicking) return;
    this.panicking = panicking;
    this.onChange(panicking);
  }
}
