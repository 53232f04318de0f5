// `tandem demo`: two demo application instances on 127.0.0.1:8080/8081
// behind tandem on 15000 (config/demo.yaml), plus a short burst of requests
// so the access log, the retries and the metrics show at once.

import type http from 'node:http';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { loadConfigFileIsolated } from '../config/load-isolated.js';
import { formatConfigError } from '../config/errors.js';
import { Tandem } from '../tandem.js';
import { createDemoApp } from './app.js';

export const DEMO_CONFIG_FILE = fileURLToPath(new URL('../../config/demo.yaml', import.meta.url));

const INSTANCES = [
  { name: 'a', port: 8080, failRate: 0 },
  { name: 'b', port: 8081, failRate: 1 / 3 },
];

export async function runDemo(): Promise<{ tandem: Tandem; stopApps: () => void }> {
  const loaded = await loadConfigFileIsolated(DEMO_CONFIG_FILE);
  if (!loaded.ok) throw new Error(loaded.errors.map(formatConfigError).join('\n'));
  const apps: http.Server[] = [];
  for (const i of INSTANCES) {
    const app = createDemoApp(i);
    await new Promise<void>((resolve, reject) => {
      app.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`cannot bind demo app ${i.name} on 127.0.0.1:${i.port}: ${err.code ?? err.message}`)),
      );
      app.listen(i.port, '127.0.0.1', resolve);
    });
    apps.push(app);
  }
  const tandem = new Tandem(loaded.config);
  await tandem.start();
  const { port } = loaded.config.listeners[0]!;
  const admin = loaded.config.admin;
  let failed = 0;
  for (let n = 0; n < 12; n++) {
    const res = await request(`http://127.0.0.1:${port}/demo/${n}`);
    await res.body.dump();
    if (res.statusCode >= 500) failed++;
  }
  process.stderr.write(
    `\ntandem demo: demo app instances a (127.0.0.1:8080) and b (127.0.0.1:8081, fails 1/3 with 503)\n` +
      `  12 requests sent through tandem: ${12 - failed} answered 2xx (b's 503s were retried on a); see the access log above\n` +
      `  try:   curl -i http://127.0.0.1:${port}/hello\n` +
      `         curl http://${admin.address}:${admin.port}/metrics | grep tandem_upstream\n` +
      `         curl http://${admin.address}:${admin.port}/clusters\n` +
      `  stop:  Ctrl-C (graceful drain)\n\n`,
  );
  return {
    tandem,
    stopApps: () => {
      for (const a of apps) a.close();
    },
  };
}
