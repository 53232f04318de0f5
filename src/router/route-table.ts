// First match wins (CONTRACT §2): routes are tried in their configured order.

import type { Inbound } from '../proxy/inbound.js';
import type { CompiledListener, CompiledRoute } from '../snapshot-types.js';
import { hostWithoutPort } from './match.js';

export function findRoute(listener: CompiledListener, inbound: Inbound, path: string): CompiledRoute | undefined {
  const input = { method: inbound.method, host: hostWithoutPort(inbound.authority), path, headers: inbound.headers };
  for (const r of listener.routes) {
    if (r.matches(input)) return r;
  }
  return undefined;
}
