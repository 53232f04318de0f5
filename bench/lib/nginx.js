// Peer (e): nginx with upstream keep-alive, the non-Node reference point;
// for the HTTP/2 scenarios, on an h2c listener and forwarding over h2c.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function nginxBinary() {
  for (const candidate of ['nginx', '/usr/sbin/nginx']) {
    if (spawnSync(candidate, ['-v']).status === 0) return candidate;
  }
  return null;
}

// The server block per protocol. nginx's proxy module speaks only HTTP/1.x
// to an upstream; its grpc module speaks HTTP/2 (h2c with grpc://) and passes
// any request through, a plain GET as well, so both HTTP/2 scenarios use it.
// `listen ... http2` without TLS is h2c with prior knowledge only.
const SERVERS = {
  http1: (listenPort) => `
  server {
    listen 127.0.0.1:${listenPort};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`,
  h2c: (listenPort) => `
  server {
    listen 127.0.0.1:${listenPort} http2;
    location / {
      grpc_pass grpc://app;
    }
  }`,
};
SERVERS.grpc = SERVERS.h2c;

/** Writes a minimal single-worker nginx.conf into `dir` and returns its path; `protocol` http1 (the default), h2c or grpc. */
export function writeNginxConfig({ dir, listenPort, upstreamPort, protocol = 'http1' }) {
  const temp = join(dir, `nginx-${protocol}`);
  mkdirSync(temp, { recursive: true });
  // As root, nginx would drop its worker to `nobody`, which cannot use the
  // private temp dir; keep the worker as the invoking user instead.
  const user = process.getuid?.() === 0 ? 'user root;' : '';
  const conf = `${user}
daemon off;
master_process on;
worker_processes 1;
pid ${temp}/nginx.pid;
error_log ${temp}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${temp}/body;
  proxy_temp_path ${temp}/proxy;
  fastcgi_temp_path ${temp}/fastcgi;
  uwsgi_temp_path ${temp}/uwsgi;
  scgi_temp_path ${temp}/scgi;
  # Keep 16 KiB bodies in memory, as the Node peers do.
  client_body_buffer_size 64k;
  proxy_buffers 16 16k;
  keepalive_requests 1000000;
  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
  }${SERVERS[protocol](listenPort)}
}
`;
  const path = join(temp, 'nginx.conf');
  writeFileSync(path, conf);
  return { path, prefix: temp };
}
