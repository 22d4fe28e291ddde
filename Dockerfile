# chikai: one image for the node proxy and the xDS server (subcommands of `chikai`).
# Build stage: compile TypeScript with the dev dependencies.
FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY cluster ./cluster
COPY proxy ./proxy
COPY queue ./queue
COPY xds ./xds
RUN npx tsc -p tsconfig.json

# Runtime stage: production dependencies only, non-root, read-only friendly.
FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
COPY cluster/demo-cluster.yaml ./cluster/demo-cluster.yaml
USER 65532:65532
EXPOSE 8012 9090 18000 18080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.CHIKAI_ADMIN_PORT || '9090') + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/bin/chikai.js"]
CMD ["proxy", "--help"]
