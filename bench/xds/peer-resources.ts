// The resources a peer xDS server serves: exactly what chikai's builder makes from the
// bench model, per gateway view, before and after the changed pod turns unready. Written
// as Envoy JSON (what protojson reads), one file per view and state.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configuredLoadView } from '../../cluster/load.js';
import { SnapshotBuilder } from '../../xds/builder.js';
import { SnapshotCache } from '../../xds/cache.js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, type ResourceTypeUrl } from '../../xds/protos.js';
import { benchModel } from './model.js';

/** Writes `<dir>/ready/<view>.json` and `<dir>/unready/<view>.json`; returns the view names. */
export function writePeerResources(revisions: number, dir: string): string[] {
  const { model, changedPod } = benchModel(revisions);
  const store = new SnapshotCache();
  const builder = new SnapshotBuilder({ model, load: configuredLoadView(() => model.current), store, build: { proxyPort: 8012 } });
  builder.start();
  const dump = (state: string) => {
    mkdirSync(join(dir, state), { recursive: true });
    for (const key of store.viewKeys()) {
      const view = store.view(key);
      // Kourier gateways subscribe to LDS by wildcard: the listeners in the wildcard set.
      const of = (type: ResourceTypeUrl) => [...(view.types.get(type)?.resources.values() ?? [])].filter((e) => e.inWildcard).map((e) => e.json);
      const body = { clusters: of(CLUSTER_TYPE), endpoints: of(ENDPOINT_TYPE), listeners: of(LISTENER_TYPE), routes: of(ROUTE_TYPE) };
      writeFileSync(join(dir, state, `${key}.json`), JSON.stringify(body));
    }
  };
  dump('ready');
  model.setReady(changedPod, false);
  builder.flush();
  dump('unready');
  builder.stop();
  return store.viewKeys();
}
