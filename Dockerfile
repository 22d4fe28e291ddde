# chikai: one image for the node proxy and the xDS server (subcommands of `chikai`):
#   docker run IMAGE proxy --node NAME --source kubernetes --listen 0.0.0.0:8012 --admin 0.0.0.0:9090
#   docker run IMAGE xds --source kubernetes --listen 0.0.0.0:18000 --admin 0.0.0.0:18080
# Node.js 22 LTS in the image; the code also runs on Node.js 20 (CI, development).
ARG NODE_IMAGE=node:22-bookworm-slim

# Build stage: compile TypeScript with the dev dependencies.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY cluster ./cluster
COPY gateway ./gateway
COPY map ./map
COPY monitor ./monitor
COPY proxy ./proxy
COPY queue ./queue
COPY xds ./xds
RUN npx tsc -p tsconfig.json

# Dependencies stage: production dependencies only, without npm's cache.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# Runtime stage: compiled code + production dependencies, owned by root and run as an
# unprivileged user, so the pods can mount the root filesystem read-only.
FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="chikai" \
      org.opencontainers.image.description="Locality- and load-aware data plane for Knative Serving: node proxy and xDS server" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY cluster/demo-cluster.yaml ./cluster/demo-cluster.yaml
# The autoscaler's stat messages are encoded from this schema at run time.
COPY proxy/stat.proto ./proxy/stat.proto
COPY deploy/components/gateway/envoy-bootstrap.yaml ./deploy/components/gateway/envoy-bootstrap.yaml
# The demo's traffic map page, and the rules and dashboard `chikai monitor` loads.
COPY map/page.html ./map/page.html
COPY deploy/components/monitoring/rules.yaml ./deploy/components/monitoring/rules.yaml
COPY deploy/components/monitoring/dashboards/chikai.json ./deploy/components/monitoring/dashboards/chikai.json
USER 65532:65532
EXPOSE 8012 9090 18000 18080
# The admin port answers /healthz (proxy: 9090; xDS server: set CHIKAI_ADMIN_PORT=18080).
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.CHIKAI_ADMIN_PORT || '9090') + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/bin/chikai.js"]
CMD ["--help"]
