// node:http, loaded through require. An ES import of a built-in module reads
// every one of its exports to build the namespace, and node:http's
// WebSocket, CloseEvent and MessageEvent getters then load Node's own
// bundled copy of undici next to ours: about 1 MiB of tandem's RSS at rest
// and up to 3 MiB under load, for classes tandem never uses.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const http: typeof import('node:http') = require('node:http');
