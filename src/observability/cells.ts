// Metric families whose per-request update is a field increment. prom-client's
// own children hash their label object on every inc()/observe() (about a
// microsecond each, six times per request); these keep plain numbers in
// cells bound once per label set and build prom-client's sample list only
// when /metrics is scraped. They register in a prom-client Registry like
// any metric, so the text format stays prom-client's.

import type { Registry } from 'prom-client';

type Labels = Record<string, string>;

interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}

/** A value cell: counters only grow it, gauges move it both ways. */
export interface Cell {
  value: number;
}

/**
 * How prom-client's AggregatorRegistry merges one series across worker
 * threads (docs/workers.md): counts add up; a gauge that states a fact
 * about tandem as a whole says how.
 */
export type Aggregator = 'sum' | 'max' | 'min';

abstract class Family<C> {
  protected readonly cells = new Map<string, { labels: Labels; cell: C }>();

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly labelNames: readonly string[],
    readonly aggregator: Aggregator = 'sum',
  ) {
    registry.registerMetric(this as never);
  }

  /** The cell of one label set: created on first use, then the same object. */
  cell(...values: string[]): C {
    const key = values.join('\u0000');
    let entry = this.cells.get(key);
    if (entry === undefined) {
      const labels: Labels = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i] ?? ''));
      entry = { labels, cell: this.newCell() };
      this.cells.set(key, entry);
    }
    return entry.cell;
  }

  remove(...values: string[]): void {
    this.cells.delete(values.join('\u0000'));
  }

  protected abstract newCell(): C;
  protected abstract samples(labels: Labels, cell: C, out: Sample[]): void;

  /** prom-client's metric interface: called when the registry renders. */
  get(): { name: string; help: string; type: string; values: Sample[]; aggregator: string } {
    const values: Sample[] = [];
    for (const { labels, cell } of this.cells.values()) this.samples(labels, cell, values);
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/** A counter (only ever incremented) or a gauge (moved both ways): one number per label set. */
export class CellValue extends Family<Cell> {
  constructor(registry: Registry, type: 'counter' | 'gauge', name: string, help: string, labelNames: readonly string[], aggregator?: Aggregator) {
    super(registry, name, help, type, labelNames, aggregator);
  }

  protected newCell(): Cell {
    return { value: 0 };
  }

  protected samples(labels: Labels, cell: Cell, out: Sample[]): void {
    out.push({ value: cell.value, labels });
  }
}

export class HistogramCell {
  /** per bucket, not cumulative: the last slot is +Inf */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export class CellHistogram extends Family<HistogramCell> {
  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    super(registry, name, help, 'histogram', labelNames);
  }

  protected newCell(): HistogramCell {
    return new HistogramCell(this.bounds);
  }

  protected samples(labels: Labels, cell: HistogramCell, out: Sample[]): void {
    let cumulative = 0;
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += cell.counts[i]!;
      const le = i < this.bounds.length ? String(this.bounds[i]) : '+Inf';
      out.push({ value: cumulative, labels: { ...labels, le }, metricName: `${this.name}_bucket` });
    }
    out.push({ value: cell.sum, labels, metricName: `${this.name}_sum` });
    out.push({ value: cell.count, labels, metricName: `${this.name}_count` });
  }
}
