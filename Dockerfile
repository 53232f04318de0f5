# tandem container image: `docker build -t tandem .`
#
# Both stages use the Node.js major the repository pins (package.json's `node`
# dev dependency); a test keeps the two in step.

FROM node:24-bookworm-slim AS build
WORKDIR /build
COPY package.json package-lock.json ./
# npm ci's postinstall patches undici (scripts/patch-undici.mjs)
COPY scripts ./scripts
RUN npm ci
COPY tsconfig.json ./
COPY src ./src
RUN npm run build

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
COPY scripts ./scripts
RUN npm ci --omit=dev && npm cache clean --force
COPY --from=build /build/dist ./dist
# The embedded default layout as a file: listener 0.0.0.0:15000 -> app
# 127.0.0.1:8080. In Kubernetes a ConfigMap is mounted over /etc/tandem.
COPY config/tandem.yaml /etc/tandem/tandem.yaml
USER node
# 15000: the listener. 9901: the admin API, which this default config binds
# to 127.0.0.1 only, so nothing outside the container reaches it. Kubelet
# httpGet probes and Prometheus come from outside the Pod (to the Pod IP): a
# Kubernetes config sets `admin.address: 0.0.0.0` and fences the port with a
# NetworkPolicy (see k8s/ and docs/kubernetes.md).
EXPOSE 15000 9901
# The V8 flags of the CLI's shebang (lower peak RSS under load; see
# src/cli.ts); `node dist/cli.js` bypasses the shebang, so repeat them.
ENTRYPOINT ["node", "--max-semi-space-size=4", "--no-concurrent-recompilation", "--liftoff-only", "dist/cli.js"]
CMD ["--config", "/etc/tandem/tandem.yaml"]
