import type { IncomingMessage, ServerResponse } from 'node:http';
import { http } from '../node-http.js';
import type { AddressInfo } from 'node:net';
import { endpoints, type AdminState } from './endpoints.js';
import { log } from '../observability/log.js';
import { json } from './reply.js';

export type { AdminState, ReloadOutcome } from './endpoints.js';

export interface AdminServer {
  readonly port: number;
  /** stops accepting, closes idle connections, resolves when in-flight answers are done */
  close(): Promise<void>;
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

async function serve(state: AdminState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  const query = url.indexOf('?');
  const endpoint = endpoints.get(query === -1 ? url : url.slice(0, query));
  if (endpoint === undefined) return json(res, 404, { error: 'not_found' });

  const method = req.method ?? '';
  const allowed = endpoint.allow === 'POST' ? method === 'POST' : method === 'GET' || method === 'HEAD';
  if (!allowed) {
    res.setHeader('allow', endpoint.allow);
    return json(res, 405, { error: 'method_not_allowed' });
  }

  try {
    await endpoint.handle(state, res);
  } catch (err) {
    if (res.headersSent) res.destroy();
    else json(res, 500, { error: 'internal', message: err instanceof Error ? err.message : String(err) });
  }
}

export function startAdmin(address: string, port: number, state: AdminState): Promise<AdminServer> {
  // Answers still being prepared when close() is called: they must carry
  // `connection: close`, or their keep-alive connection would hold close()
  // open until the idle timeout.
  const inFlight = new Set<ServerResponse>();
  let closing: Promise<void> | undefined;
  const server = http.createServer((req, res) => {
    if (closing) res.setHeader('connection', 'close');
    inFlight.add(res);
    res.once('close', () => inFlight.delete(res));
    void serve(state, req, res);
  });

  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve, reject) => {
      for (const res of inFlight) if (!res.headersSent) res.setHeader('connection', 'close');
      server.close((err) => (err ? reject(err) : resolve()));
      server.closeIdleConnections();
    });
    return closing;
  };

  return new Promise((resolve, reject) => {
    const bindFailed = (err: NodeJS.ErrnoException) => {
      reject(new Error(`cannot bind admin ${hostPort(address, port)}: ${err.code ?? err.message}`, { cause: err }));
    };
    server.once('error', bindFailed);
    server.listen({ host: address, port }, () => {
      server.off('error', bindFailed);
      const bound = (server.address() as AddressInfo).port;
      // Past the bind, a server error (say, accept hitting EMFILE) must not
      // take the proxy down with it.
      server.on('error', (err) => log.error({ admin: hostPort(address, bound), error: err.message }, 'admin server error'));
      resolve({ port: bound, close });
    });
  });
}
