// The Envoy API protos, loaded once per process from the copy @grpc/grpc-js-xds ships under
// deps/ (Envoy, xds, googleapis, protoc-gen-validate). protobufjs is used directly rather
// than through proto-loader because proto-loader drops custom options, and the PGV rules
// (`(validate.rules)`) are custom options the validator needs.
import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join } from 'node:path';
import protobuf from 'protobufjs';

export const TYPE_URL_PREFIX = 'type.googleapis.com/';

/** The four resource types chikai serves, in the order a push must follow (CDS → EDS → LDS → RDS). */
export const CLUSTER_TYPE = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
export const ENDPOINT_TYPE = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
export const LISTENER_TYPE = 'type.googleapis.com/envoy.config.listener.v3.Listener';
export const ROUTE_TYPE = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
export const PUSH_ORDER = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE] as const;
export type ResourceTypeUrl = (typeof PUSH_ORDER)[number];

export const HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
export const HTTP_PROTOCOL_OPTIONS_TYPE = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** Short names for logs, admin output and metric labels. */
export const TYPE_SHORT_NAME: Readonly<Record<ResourceTypeUrl, 'CDS' | 'EDS' | 'LDS' | 'RDS'>> = {
  [CLUSTER_TYPE]: 'CDS',
  [ENDPOINT_TYPE]: 'EDS',
  [LISTENER_TYPE]: 'LDS',
  [ROUTE_TYPE]: 'RDS',
};

export function isResourceTypeUrl(url: string): url is ResourceTypeUrl {
  return (PUSH_ORDER as readonly string[]).includes(url);
}

/** Every .proto file the server needs; their imports come along. */
const PROTO_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
  'envoy/service/load_stats/v3/lrs.proto',
];

export type MessageType = protobuf.Type;

export interface EnvoyProtos {
  readonly root: protobuf.Root;
  /** The message type named by a type URL or a full name, or an error naming what is missing. */
  type(typeUrlOrName: string): MessageType;
  /** Load more .proto files (by path under deps/) into the same root, e.g. the bootstrap. */
  load(files: readonly string[]): void;
}

let loaded: EnvoyProtos | undefined;

/** Folders under @grpc/grpc-js-xds/deps that hold the protos, in import-resolution order. */
export function protoIncludeDirs(): string[] {
  const require = createRequire(import.meta.url);
  const pkgDir = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(pkgDir, 'deps', d));
}

/** The process-wide Envoy protos (loading takes a second or two, so it happens once). */
export function envoyProtos(): EnvoyProtos {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  // descriptor.proto is needed by validate.proto's extensions; protobufjs bundles it as JSON
  // but does not register it as a common file by itself.
  protobuf.common('descriptor', require('protobufjs/google/protobuf/descriptor.json').nested.google.nested.protobuf.nested);
  const dirs = protoIncludeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    if (isAbsolute(target)) return target;
    for (const dir of dirs) {
      const full = join(dir, target);
      try {
        accessSync(full, constants.R_OK);
        return full;
      } catch {
        // try the next include folder
      }
    }
    // google/protobuf/*.proto are bundled with protobufjs and resolved by name.
    return target;
  };
  root.loadSync(PROTO_FILES, { keepCase: true });
  root.resolveAll();
  const cache = new Map<string, MessageType>();
  loaded = {
    root,
    type(typeUrlOrName) {
      const name = typeUrlOrName.slice(typeUrlOrName.lastIndexOf('/') + 1);
      let t = cache.get(name);
      if (!t) {
        const found = root.lookup(name);
        if (!(found instanceof protobuf.Type)) {
          throw new Error(`unknown protobuf message type ${JSON.stringify(name)} (from ${JSON.stringify(typeUrlOrName)}): not in the loaded Envoy protos`);
        }
        t = found;
        cache.set(name, t);
      }
      return t;
    },
    load(files) {
      root.loadSync([...files], { keepCase: true });
      root.resolveAll();
    },
  };
  return loaded;
}
