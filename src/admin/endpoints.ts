import type { ServerResponse } from 'node:http';
import type { MetricsSource } from '../workers/fleet.js';
import { json, send, text } from './reply.js';

export type ReloadOutcome = { ok: true; version: number } | { ok: false; errors: string[] };

/** What the admin API reads from and acts on; the running proxy provides it. */
export interface AdminState {
  /** listeners bound and not draining */
  ready(): boolean;
  configView(): { version: number; loadedAt: string; config: unknown };
  /** [{ name, breaker, panic, endpoints: [{ address, port, healthy, ejected, activeRequests, latencyEstimateMs? }] }] */
  clustersView(): Promise<unknown[]>;
  metrics: MetricsSource;
  /** absent: POST /reload answers 501 */
  reload?(): Promise<ReloadOutcome>;
  /** starts the drain */
  quit(): void;
}

export interface Endpoint {
  /** the `allow` header: read endpoints take GET and HEAD, state-changing ones POST */
  allow: 'GET, HEAD' | 'POST';
  handle(state: AdminState, res: ServerResponse): void | Promise<void>;
}

const read = (handle: Endpoint['handle']): Endpoint => ({ allow: 'GET, HEAD', handle });
const change = (handle: Endpoint['handle']): Endpoint => ({ allow: 'POST', handle });

export const endpoints = new Map<string, Endpoint>([
  ['/ready', read((state, res) => (state.ready() ? text(res, 200, 'ready') : text(res, 503, 'not ready')))],
  ['/live', read((_state, res) => text(res, 200, 'live'))],
  [
    '/metrics',
    read(async (state, res) => send(res, 200, state.metrics.contentType, await state.metrics.render())),
  ],
  ['/config', read((state, res) => json(res, 200, state.configView()))],
  ['/clusters', read(async (state, res) => json(res, 200, await state.clustersView()))],
  [
    '/reload',
    change(async (state, res) => {
      if (!state.reload) return json(res, 501, { error: 'not_implemented' });
      const outcome = await state.reload();
      if (outcome.ok) json(res, 200, { version: outcome.version });
      else json(res, 400, { errors: outcome.errors });
    }),
  ],
  [
    '/quitquitquit',
    change((state, res) => {
      // 'close' follows the end of the response, or the client leaving
      // early: either way the caller asked for the drain.
      res.once('close', () => state.quit());
      text(res, 200, 'draining');
    }),
  ],
]);
