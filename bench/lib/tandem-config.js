// Fills bench/tandem.bench.yaml (or another template of the bench's, bench/configs/) with
// the ports and paths of this run.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';

const defaultTemplate = new URL('../tandem.bench.yaml', import.meta.url);

/**
 * @param {{ dir: string, listenPort: number, adminPort: number, upstreamPorts: number[], tag?: string, template?: URL, collectorPort?: number, workers?: number }} run
 *   the endpoints, cluster after cluster, take `upstreamPorts` in order; `collectorPort`: where a template with `tracing` exports its spans;
 *   `workers`: the template's `workers` replaced
 * @returns {string} the path of the generated file
 */
export function writeTandemConfig({ dir, listenPort, adminPort, upstreamPorts, tag = 'tandem', template = defaultTemplate, collectorPort, workers }) {
  // parseDocument keeps the template's comments in the generated file.
  const doc = parseDocument(readFileSync(template, 'utf8'));
  if (workers !== undefined) doc.set('workers', workers);
  if (collectorPort !== undefined) doc.setIn(['tracing', 'otlp', 'endpoint'], `http://127.0.0.1:${collectorPort}/v1/traces`);
  doc.setIn(['admin', 'port'], adminPort);
  doc.setIn(['accessLog', 'path'], join(dir, `${tag}-access.log`));
  doc.setIn(['listeners', 0, 'port'], listenPort);
  let next = 0;
  for (const cluster of doc.get('clusters').items) {
    const endpoints = cluster.get('endpoints');
    for (let i = 0; i < endpoints.items.length; i += 1) {
      const port = upstreamPorts[next % upstreamPorts.length];
      next += 1;
      endpoints.set(i, `127.0.0.1:${port}`);
    }
  }
  const path = join(dir, `${tag}.bench.yaml`);
  writeFileSync(path, doc.toString());
  return path;
}
