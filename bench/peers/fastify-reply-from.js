// Peer (e): what a Node user would pick instead of tandem: fastify with
// @fastify/reply-from (undici underneath), every path forwarded to one
// upstream, the plugin's defaults otherwise.
// Usage: node bench/peers/fastify-reply-from.js LISTEN_PORT TARGET_URL
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const [port, target] = process.argv.slice(2);
const app = Fastify({ logger: false });
await app.register(replyFrom, { base: target });
// the body goes to the upstream as a stream, as the other peers send it: no parsing
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
app.all('/*', (req, reply) => reply.from(req.url));
await app.listen({ port: Number(port), host: '127.0.0.1' });
