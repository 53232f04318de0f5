// The bundled demo application: a tiny HTTP service that echoes what it
// received, and can be told to fail a share of its requests so the demo
// shows tandem retrying.

import type { Server } from 'node:http';
import { http } from '../node-http.js';

export interface DemoAppOptions {
  name: string;
  /** share of requests answered 503, 0..1 */
  failRate: number;
}

export function createDemoApp(opts: DemoAppOptions): Server {
  return http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      if (Math.random() < opts.failRate) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ instance: opts.name, error: 'simulated failure' }) + '\n');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          instance: opts.name,
          method: req.method,
          path: req.url,
          requestId: req.headers['x-request-id'],
          forwardedFor: req.headers['x-forwarded-for'],
        }) + '\n',
      );
    });
  });
}
