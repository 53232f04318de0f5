// First match wins (CONTRACT §2): routes are tried in their configured order.

import type { IncomingMessage } from 'node:http';
import type { CompiledListener, CompiledRoute } from '../snapshot-types.js';
import { hostWithoutPort } from './match.js';

export function findRoute(listener: CompiledListener, req: IncomingMessage, path: string): CompiledRoute | undefined {
  const input = { method: req.method!, host: hostWithoutPort(req.headers.host), path, headers: req.headers };
  for (const r of listener.routes) {
    if (r.matches(input)) return r;
  }
  return undefined;
}
