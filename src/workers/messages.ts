// What the main thread and a worker thread say to each other. Everything
// here crosses by structured clone; nothing on a request's path does.

import type { Config } from '../config/types.js';
import type { BoundListener } from './fleet.js';
import type { SharedBuffers } from './shared-state.js';

/** A worker's start: its configuration (ports fixed by the first worker when the file says 0) and slot. */
export interface ThreadStart {
  config: Config;
  version: number;
  /** the limits, buckets and breakers of `config`, the same memory in every worker */
  shared: SharedBuffers;
  /** this worker's place among `count`, kept by its replacement */
  index: number;
  count: number;
}

/** Requests from the main thread; each gets one `reply` with the same id. */
export type ThreadCall =
  | { id: number; op: 'metrics' }
  | { id: number; op: 'clusters' }
  | { id: number; op: 'apply'; config: Config; version: number; shared: SharedBuffers }
  | { id: number; op: 'flush' }
  | { id: number; op: 'beginDrain' }
  | { id: number; op: 'finish'; timeoutMs: number };

export type ThreadMessage =
  | { type: 'listening'; bound: BoundListener[] }
  | { type: 'failed'; message: string }
  /** a batch of whole access-log lines */
  | { type: 'log'; bytes: Uint8Array }
  | { type: 'reply'; id: number; value?: unknown; error?: string };
