// What GET /config shows: the effective configuration, less its secrets.
// The collector's headers usually carry an API key or a bearer token, and the
// admin API is read by dashboards and support bundles: their names stay
// visible, their values do not.

import type { Config } from './types.js';

export const REDACTED = '<redacted>';

export function redactedConfig(config: Config): Config {
  const otlp = config.tracing?.otlp;
  if (otlp === undefined || Object.keys(otlp.headers).length === 0) return config;
  const headers: Record<string, string> = {};
  for (const name in otlp.headers) headers[name] = REDACTED;
  return { ...config, tracing: { ...config.tracing!, otlp: { ...otlp, headers } } };
}
