// deploy/: every overlay renders with `kubectl kustomize`, and the rendered objects fit
// together the way the cluster needs them to (selectors match labels, ports match,
// ServiceAccounts exist and are bound, RBAC only reads, the gateway reaches the xDS
// server, the dashboard only uses metrics the proxy exports).
import t from 'tap';
import { envoyProtos } from '../xds/protos.js';
import { validateMessage } from '../xds/validate.js';
import { packAny, type JsonObject } from '../xds/protojson.js';
import { GATEWAY_ADMIN_CLUSTER, GATEWAY_STATUS_HOST } from '../xds/resources.js';
import { gatewayBootstrapYaml } from '../gateway/bootstrap.js';

const BOOTSTRAP_TYPE = 'type.googleapis.com/envoy.config.bootstrap.v3.Bootstrap';
envoyProtos().load(['envoy/config/bootstrap/v3/bootstrap.proto', 'envoy/extensions/transport_sockets/tls/v3/tls.proto']);
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OVERLAYS = readdirSync(join(ROOT, 'deploy/overlays')).sort();
const KUBECTL = process.env['KUBECTL'] ?? 'kubectl';

type Obj = Record<string, unknown>;

function dig(o: unknown, ...path: (string | number)[]): unknown {
  let cur = o;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[k];
  }
  return cur;
}
const str = (o: unknown, ...p: (string | number)[]) => dig(o, ...p) as string | undefined;
const list = (o: unknown, ...p: (string | number)[]) => (dig(o, ...p) as Obj[] | undefined) ?? [];
const map = (o: unknown, ...p: (string | number)[]) => (dig(o, ...p) as Record<string, string> | undefined) ?? {};

async function render(overlay: string): Promise<Obj[]> {
  let stdout: string;
  try {
    ({ stdout } = await run(KUBECTL, ['kustomize', join(ROOT, 'deploy/overlays', overlay)], { maxBuffer: 16 << 20 }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`kubectl is needed to render deploy/ (apt-get install -y kubectl, or set KUBECTL=/path/to/kubectl)`);
    throw new Error(`kubectl kustomize deploy/overlays/${overlay} failed: ${e.stderr ?? e.message}`);
  }
  return parseAllDocuments(stdout).map((d) => d.toJS() as Obj).filter((o) => o && typeof o === 'object');
}

function find(objs: Obj[], kind: string, name: string, namespace?: string): Obj | undefined {
  return objs.find((o) => o['kind'] === kind && str(o, 'metadata', 'name') === name && (namespace === undefined || str(o, 'metadata', 'namespace') === namespace));
}

function need(objs: Obj[], kind: string, name: string, namespace?: string): Obj {
  const o = find(objs, kind, name, namespace);
  if (!o) throw new Error(`no ${kind} ${namespace ? `${namespace}/` : ''}${name} in the rendered overlay`);
  return o;
}

const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

const rendered = new Map<string, Obj[]>();
t.before(async () => {
  for (const o of OVERLAYS) rendered.set(o, await render(o));
});

t.test('every overlay renders, each object once', async (t) => {
  t.same(OVERLAYS, ['activator-only', 'full', 'full-monitoring', 'full-mtls']);
  for (const [overlay, objs] of rendered) {
    const ids = objs.map((o) => `${o['kind']} ${str(o, 'metadata', 'namespace') ?? ''}/${str(o, 'metadata', 'name')}`);
    t.same(ids.filter((id, i) => ids.indexOf(id) !== i), [], `${overlay}: no duplicates`);
    t.ok(find(objs, 'Namespace', 'chikai-system'), `${overlay}: namespace`);
  }
  const kinds = (o: string) => new Set(rendered.get(o)!.map((x) => `${x['kind']}/${str(x, 'metadata', 'name')}`));
  t.notOk(kinds('activator-only').has('DaemonSet/chikai-kourier-gateway'), 'activator-only leaves the gateways stock');
  t.ok(kinds('full').has('DaemonSet/chikai-kourier-gateway'));
  t.ok(kinds('full-monitoring').has('ServiceMonitor/chikai-proxy'));
  t.notOk(kinds('full').has('ServiceMonitor/chikai-proxy'), 'full works without the Prometheus Operator CRDs');
});

t.test('RBAC: read-only ClusterRoles covering exactly what the source reads, bound to the pods\' ServiceAccounts', async (t) => {
  const READ = new Set(['get', 'list', 'watch']);
  for (const [overlay, objs] of rendered) {
    const roles = objs.filter((o) => o['kind'] === 'ClusterRole' || o['kind'] === 'Role');
    t.ok(roles.length >= 2, `${overlay}: roles present`);
    for (const role of roles) {
      for (const rule of list(role, 'rules')) {
        const verbs = (rule['verbs'] as string[]) ?? [];
        t.same(verbs.filter((v) => !READ.has(v)), [], `${overlay}: ${str(role, 'metadata', 'name')} grants no write verb (${verbs.join(',')})`);
        for (const field of ['apiGroups', 'resources', 'verbs']) t.notOk(((rule[field] as string[]) ?? []).includes('*'), `${overlay}: no wildcard ${field}`);
        t.notOk(rule['nonResourceURLs'], 'no non-resource URLs');
      }
    }
    const grants = (name: string) => list(need(objs, 'ClusterRole', name), 'rules')
      .flatMap((r) => (r['resources'] as string[]).flatMap((res) => (r['apiGroups'] as string[]).map((g) => `${res}.${g || 'core'}`))).sort();
    t.same(grants('chikai-proxy'), ['endpointslices.discovery.k8s.io', 'nodes.core', 'revisions.serving.knative.dev']);
    t.same(grants('chikai-xds'), ['endpointslices.discovery.k8s.io', 'ingresses.networking.internal.knative.dev', 'nodes.core', 'revisions.serving.knative.dev']);
    t.notOk(objs.some((o) => o['kind'] === 'Secret' || (o['kind'] === 'ClusterRoleBinding' && str(o, 'roleRef', 'name') === 'cluster-admin')), 'no secrets, no cluster-admin');

    // Every pod's ServiceAccount exists in its namespace and is bound to a role.
    for (const w of objs.filter((o) => o['kind'] === 'DaemonSet' || o['kind'] === 'Deployment')) {
      const sa = str(w, 'spec', 'template', 'spec', 'serviceAccountName');
      if (str(w, 'metadata', 'name') === 'chikai-kourier-gateway') {
        t.equal(sa, undefined, 'the gateway needs no API access');
        continue;
      }
      const ns = str(w, 'metadata', 'namespace');
      t.ok(sa && find(objs, 'ServiceAccount', sa, ns), `${overlay}: ${str(w, 'metadata', 'name')} runs as ServiceAccount ${ns}/${sa}`);
      const bound = objs.some((b) => b['kind'] === 'ClusterRoleBinding' && list(b, 'subjects').some((s) => s['name'] === sa && s['namespace'] === ns && s['kind'] === 'ServiceAccount'));
      t.ok(bound, `${overlay}: ${ns}/${sa} is bound`);
    }
  }
});

t.test('the proxy DaemonSet: activator port, metrics, probes, drain, downward API, least privilege', async (t) => {
  for (const [overlay, objs] of rendered) {
    const ds = need(objs, 'DaemonSet', 'chikai-proxy', 'knative-serving');
    const pod = dig(ds, 'spec', 'template', 'spec') as Obj;
    const c = list(pod, 'containers')[0];
    t.same(c['command'], ['node', 'dist/bin/chikai.js'], `${overlay}: the image's entry point`);
    const args = (c['args'] as string[]).join(' ');
    t.match(args, /^proxy --node \$\(NODE_NAME\) --source kubernetes/, 'proxy --node $(NODE_NAME) --source kubernetes');
    t.match(args, /--listen 0\.0\.0\.0:8012 --admin 0\.0\.0\.0:9090/);
    const env = Object.fromEntries(list(c, 'env').map((e) => [e['name'], e]));
    t.equal(str(env['NODE_NAME'], 'valueFrom', 'fieldRef', 'fieldPath'), 'spec.nodeName', 'node name from the downward API');
    t.equal(str(env['POD_NAME'], 'valueFrom', 'fieldRef', 'fieldPath'), 'metadata.name', 'pod name for the autoscaler stats');
    t.match(str(env['CHIKAI_AUTOSCALER_URL'], 'value') ?? '', /^ws:\/\/autoscaler\.knative-serving(\.svc\.cluster\.local)?:8080$/);
    const ports = Object.fromEntries(list(c, 'ports').map((p) => [p['name'], p]));
    t.same([ports['http']?.['containerPort'], ports['metrics']?.['containerPort']], [8012, 9090]);
    const peers = need(objs, 'Service', 'chikai-proxy', 'knative-serving');
    t.equal(dig(peers, 'spec', 'clusterIP'), 'None', 'headless: its EndpointSlices list every proxy pod with its node');
    t.ok(selects(map(peers, 'spec', 'selector'), map(ds, 'spec', 'template', 'metadata', 'labels')), 'the proxies\' Service selects the proxies');
    t.match(args, /--proxies knative-serving\/chikai-proxy|^(?!.*--proxies)/, 'the proxies read that Service (the default --proxies)');
    t.same([str(c, 'readinessProbe', 'httpGet', 'path'), dig(c, 'readinessProbe', 'httpGet', 'port')], ['/readyz', 'metrics']);
    t.equal(str(c, 'livenessProbe', 'httpGet', 'path'), '/healthz');
    t.ok(dig(c, 'lifecycle', 'preStop', 'exec', 'command'), 'preStop before the drain');
    t.ok((dig(pod, 'terminationGracePeriodSeconds') as number) >= 50, 'grace period covers preStop + the 45 s drain');
    t.ok(dig(c, 'resources', 'requests', 'cpu') && dig(c, 'resources', 'requests', 'memory'), 'resource requests');
    t.equal(dig(pod, 'securityContext', 'runAsNonRoot'), true);
    t.ok((dig(pod, 'securityContext', 'runAsUser') as number) > 0, 'a non-root uid');
    t.equal(dig(c, 'securityContext', 'readOnlyRootFilesystem'), true);
    t.equal(dig(c, 'securityContext', 'allowPrivilegeEscalation'), false);
    t.same(dig(c, 'securityContext', 'capabilities', 'drop'), ['ALL']);
    t.notOk(dig(pod, 'hostNetwork'), 'pod network');
    t.ok(selects(map(ds, 'spec', 'selector', 'matchLabels'), map(ds, 'spec', 'template', 'metadata', 'labels')), 'selector matches the template');
  }
});

t.test('the xDS server: Deployment and Service on 18000, with readiness', async (t) => {
  for (const [overlay, objs] of rendered) {
    const dep = need(objs, 'Deployment', 'chikai-xds', 'chikai-system');
    const c = list(dep, 'spec', 'template', 'spec', 'containers')[0];
    t.match((c['args'] as string[]).join(' '), /^xds --source kubernetes --listen 0\.0\.0\.0:18000/, overlay);
    t.ok(dig(c, 'readinessProbe'), 'readiness probe');
    const svc = need(objs, 'Service', 'chikai-xds', 'chikai-system');
    t.ok(selects(map(svc, 'spec', 'selector'), map(dep, 'spec', 'template', 'metadata', 'labels')), 'the Service selects the xDS pods');
    const port = list(svc, 'spec', 'ports').find((p) => p['port'] === 18000);
    t.ok(port, 'port 18000');
    const target = port?.['targetPort'];
    t.ok(list(c, 'ports').some((p) => p['name'] === target || p['containerPort'] === target), 'its targetPort is a container port');
    t.equal(dig(c, 'securityContext', 'readOnlyRootFilesystem'), true);
    t.equal(dig(dep, 'spec', 'template', 'spec', 'securityContext', 'runAsNonRoot'), true);
  }
});

t.test('every proxy reports its load to every xDS replica: a headless Service naming each one on the ADS port', async (t) => {
  for (const [overlay, objs] of rendered) {
    const ds = need(objs, 'DaemonSet', 'chikai-proxy', 'knative-serving');
    const args = list(ds, 'spec', 'template', 'spec', 'containers')[0]['args'] as string[];
    const to = args[args.indexOf('--load-report-to') + 1] ?? '';
    const m = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)$/.exec(to);
    t.ok(m, `${overlay}: --load-report-to names a Service (${to})`);
    const svc = need(objs, 'Service', m?.[1] ?? '', m?.[2] ?? '');
    t.equal(dig(svc, 'spec', 'clusterIP'), 'None', 'headless: it resolves to every replica, not one virtual IP');
    const dep = need(objs, 'Deployment', 'chikai-xds', 'chikai-system');
    t.ok(selects(map(svc, 'spec', 'selector'), map(dep, 'spec', 'template', 'metadata', 'labels')), 'it selects the xDS pods');
    const c = list(dep, 'spec', 'template', 'spec', 'containers')[0];
    const grpc = list(c, 'ports').find((p) => p['containerPort'] === Number(m?.[3]));
    t.equal(grpc?.['name'], 'grpc-xds', 'on the port the xDS server serves ADS and LRS');
  }
});

t.test('the activator is replaced: activator-service selects the proxies on 8012', async (t) => {
  for (const [overlay, objs] of rendered) {
    const svc = need(objs, 'Service', 'activator-service', 'knative-serving');
    const ds = need(objs, 'DaemonSet', 'chikai-proxy', 'knative-serving');
    t.ok(selects(map(svc, 'spec', 'selector'), map(ds, 'spec', 'template', 'metadata', 'labels')), `${overlay}: selector matches the proxy pods`);
    const http = list(svc, 'spec', 'ports').find((p) => p['name'] === 'http');
    t.same([http?.['port'], http?.['targetPort']], [80, 8012], 'Knative\'s http port, onto the proxy');
    t.equal(map(svc, 'metadata', 'labels')['app'], 'activator', 'Knative\'s labels kept');
  }
});

t.test('the gateway: bootstrap points ADS at chikai-xds, node identity from the downward API, Local traffic policies', async (t) => {
  for (const overlay of ['full', 'full-monitoring', 'full-mtls']) {
    const objs = rendered.get(overlay)!;
    const ds = need(objs, 'DaemonSet', 'chikai-kourier-gateway', 'kourier-system');
    const pod = dig(ds, 'spec', 'template', 'spec') as Obj;
    const c = list(pod, 'containers')[0];
    const args = c['args'] as string[];

    const cmName = str(list(pod, 'volumes').find((v) => dig(v, 'configMap'))!, 'configMap', 'name')!;
    const cm = need(objs, 'ConfigMap', cmName, 'kourier-system');
    const bootstrapFile = args[args.indexOf('-c') + 1];
    const mount = list(c, 'volumeMounts').find((m) => bootstrapFile.startsWith(`${m['mountPath']}/`));
    t.ok(mount, `${overlay}: -c ${bootstrapFile} is on a mounted volume`);
    const bootstrap = parse(map(cm, 'data')[bootstrapFile.split('/').pop()!]) as Obj;
    t.equal(str(bootstrap, 'dynamic_resources', 'ads_config', 'api_type'), 'GRPC');
    const adsCluster = str(list(bootstrap, 'dynamic_resources', 'ads_config', 'grpc_services')[0], 'envoy_grpc', 'cluster_name');
    const cluster = list(bootstrap, 'static_resources', 'clusters').find((x) => x['name'] === adsCluster);
    const addr = dig(cluster, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address') as Obj;
    const xds = need(objs, 'Service', 'chikai-xds', 'chikai-system');
    t.match(str(addr, 'address'), new RegExp(`^${str(xds, 'metadata', 'name')}\\.${str(xds, 'metadata', 'namespace')}(\\.svc(\\.cluster\\.local)?)?$`), 'ADS goes to the chikai-xds Service');
    t.ok(list(xds, 'spec', 'ports').some((p) => p['port'] === addr['port_value']), `on the Service's port ${String(addr['port_value'])}`);
    t.ok(dig(cluster, 'typed_extension_protocol_options'), 'over HTTP/2');
    t.equal(str(bootstrap, 'node', 'cluster'), 'kourier-knative');
    // What Envoy would parse: the Bootstrap message of the Envoy API, every field known,
    // every protoc-gen-validate rule met, and it encodes to protobuf.
    const merged = { ...bootstrap, node: { ...(bootstrap['node'] as Obj), ...(parse(args[args.indexOf('--config-yaml') + 1]) as { node: Obj }).node } };
    t.same(validateMessage(BOOTSTRAP_TYPE, merged as JsonObject), [], `${overlay}: the bootstrap is a valid envoy.config.bootstrap.v3.Bootstrap`);
    t.ok(packAny(BOOTSTRAP_TYPE, merged as JsonObject).value.length > 0, 'and encodes');

    const configYaml = parse(args[args.indexOf('--config-yaml') + 1]) as Obj;
    t.same([str(configYaml, 'node', 'id'), str(configYaml, 'node', 'locality', 'sub_zone')], ['$(NODE_NAME)', '$(NODE_NAME)'], 'node id and sub_zone = the node name');
    const env = list(c, 'env').find((e) => e['name'] === 'NODE_NAME');
    t.equal(str(env, 'valueFrom', 'fieldRef', 'fieldPath'), 'spec.nodeName');

    const podLabels = map(ds, 'spec', 'template', 'metadata', 'labels');
    for (const name of ['kourier', 'kourier-internal']) {
      const svc = need(objs, 'Service', name, 'kourier-system');
      t.equal(dig(svc, 'spec', 'internalTrafficPolicy'), 'Local', `${name}: internalTrafficPolicy Local`);
      t.ok(selects(map(svc, 'spec', 'selector'), podLabels), `${name} selects the gateway pods`);
      for (const p of list(svc, 'spec', 'ports').filter((p) => p['name'] === 'http2')) {
        t.ok(list(c, 'ports').some((cp) => cp['containerPort'] === p['targetPort']), `${name}: port ${String(p['port'])} → a gateway port`);
      }
    }
    t.equal(dig(need(objs, 'Service', 'kourier', 'kourier-system'), 'spec', 'externalTrafficPolicy'), 'Local', 'kourier: externalTrafficPolicy Local');
    t.equal(podLabels['app'], '3scale-kourier-gateway', 'the label net-kourier\'s prober looks for');
    // net-kourier's gateway readiness: GET /ready, Host internalkourier, on the internal
    // listener — routed by chikai-xds to the bootstrap's admin cluster.
    const ready = dig(c, 'readinessProbe', 'httpGet') as Obj;
    const readyPort = ready['port'];
    t.equal(list(c, 'ports').find((p) => p['name'] === readyPort || p['containerPort'] === readyPort)?.['containerPort'], 8081, 'readiness on the internal listener, 8081');
    t.equal(ready['path'], '/ready');
    t.same(list(ready, 'httpHeaders'), [{ name: 'Host', value: GATEWAY_STATUS_HOST }]);
    const adminCluster = list(bootstrap, 'static_resources', 'clusters').find((x) => x['name'] === GATEWAY_ADMIN_CLUSTER);
    const adminAddr = dig(adminCluster, 'load_assignment', 'endpoints', 0, 'lb_endpoints', 0, 'endpoint', 'address', 'socket_address') as Obj | undefined;
    t.same(adminAddr, dig(bootstrap, 'admin', 'address', 'socket_address'), `the bootstrap's ${GATEWAY_ADMIN_CLUSTER} cluster is Envoy's admin`);
    t.equal(dig(pod, 'securityContext', 'runAsNonRoot'), true);
  }
});

t.test('mutual TLS on ADS (full-mtls): the server requires it, each gateway and proxy presents its own node\'s certificate', async (t) => {
  // The xds-mtls overlay ships the template plus mutual TLS, generated.
  const MUTUAL_TLS_BOOTSTRAP = join(ROOT, 'deploy/components/xds-mtls/envoy-bootstrap.yaml');
  t.equal(readFileSync(MUTUAL_TLS_BOOTSTRAP, 'utf8'), gatewayBootstrapYaml(true),
    `${MUTUAL_TLS_BOOTSTRAP} is the template plus mutual TLS (regenerate: npm run build && node dist/bin/chikai.js gateway-bootstrap --xds-tls > deploy/components/xds-mtls/envoy-bootstrap.yaml)`);
  const objs = rendered.get('full-mtls')!;
  const secretMount = (pod: Obj, c: Obj, dir: string) => {
    const mounts = list(c, 'volumeMounts').filter((m) => String(m['mountPath']).startsWith(dir));
    const volumes = new Set(mounts.map((m) => m['name']));
    const secrets = list(pod, 'volumes').filter((v) => volumes.has(v['name'])).map((v) => str(v, 'secret', 'secretName'));
    return { mounts: Object.fromEntries(mounts.map((m) => [m['mountPath'], m['subPathExpr'] ?? m['subPath'] ?? '(whole volume)'])), secrets };
  };

  const xds = need(objs, 'Deployment', 'chikai-xds', 'chikai-system');
  const xpod = dig(xds, 'spec', 'template', 'spec') as Obj;
  const xc = list(xpod, 'containers')[0];
  const xargs = (xc['args'] as string[]).join(' ');
  t.match(xargs, /--tls-dir \/etc\/chikai-xds-tls/, 'the xDS server requires client certificates');
  t.same(secretMount(xpod, xc, '/etc/chikai-xds-tls'), { mounts: { '/etc/chikai-xds-tls': '(whole volume)' }, secrets: ['chikai-xds-tls'] });
  t.same(dig(xc, 'livenessProbe', 'httpGet'), { path: '/healthz', port: 'admin' }, 'liveness off the TLS port');
  t.notMatch((list(dig(need(rendered.get('full')!, 'Deployment', 'chikai-xds', 'chikai-system'), 'spec', 'template', 'spec'), 'containers')[0]['args'] as string[]).join(' '), /--tls-dir/, 'full stays plaintext');

  const perNode = { '/etc/chikai-xds-tls/ca.crt': 'ca.crt', '/etc/chikai-xds-tls/tls.crt': '$(NODE_NAME).crt', '/etc/chikai-xds-tls/tls.key': '$(NODE_NAME).key' };
  for (const [kind, name, ns, secret] of [['DaemonSet', 'chikai-kourier-gateway', 'kourier-system', 'chikai-gateway-xds-tls'], ['DaemonSet', 'chikai-proxy', 'knative-serving', 'chikai-proxy-xds-tls']] as const) {
    const ds = need(objs, kind, name, ns);
    const pod = dig(ds, 'spec', 'template', 'spec') as Obj;
    const c = list(pod, 'containers')[0];
    t.same(secretMount(pod, c, '/etc/chikai-xds-tls'), { mounts: perNode, secrets: [secret] }, `${name}: only its node's pair of ${secret} is mounted`);
    t.equal(str(list(c, 'env').find((e) => e['name'] === 'NODE_NAME'), 'valueFrom', 'fieldRef', 'fieldPath'), 'spec.nodeName', `${name}: $(NODE_NAME) is the node's name`);
  }
  const proxyArgs = (list(dig(need(objs, 'DaemonSet', 'chikai-proxy', 'knative-serving'), 'spec', 'template', 'spec'), 'containers')[0]['args'] as string[]).join(' ');
  t.match(proxyArgs, /--load-report-tls-dir \/etc\/chikai-xds-tls/, 'the proxies report their load with their certificate');

  const gw = dig(need(objs, 'DaemonSet', 'chikai-kourier-gateway', 'kourier-system'), 'spec', 'template', 'spec') as Obj;
  const cmName = str(list(gw, 'volumes').find((v) => dig(v, 'configMap'))!, 'configMap', 'name')!;
  const bootstrap = parse(map(need(objs, 'ConfigMap', cmName, 'kourier-system'), 'data')['envoy-bootstrap.yaml']) as Obj;
  const tls = dig(list(bootstrap, 'static_resources', 'clusters').find((c) => c['name'] === 'chikai_xds'), 'transport_socket', 'typed_config', 'common_tls_context') as Obj;
  t.same([str(tls, 'tls_certificates', 0, 'certificate_chain', 'filename'), str(tls, 'tls_certificates', 0, 'private_key', 'filename'), str(tls, 'validation_context', 'trusted_ca', 'filename')],
    ['/etc/chikai-xds-tls/tls.crt', '/etc/chikai-xds-tls/tls.key', '/etc/chikai-xds-tls/ca.crt'], 'the gateway\'s bootstrap reads the mounted files');
  const xdsSvc = need(objs, 'Service', 'chikai-xds', 'chikai-system');
  t.equal(str(tls, 'validation_context', 'match_typed_subject_alt_names', 0, 'matcher', 'exact'), `${str(xdsSvc, 'metadata', 'name')}.${str(xdsSvc, 'metadata', 'namespace')}`, 'and checks the server\'s name');
});

t.test('monitoring: the ServiceMonitor reaches the proxies, the dashboard uses metrics the proxy exports', async (t) => {
  const objs = rendered.get('full-monitoring')!;
  const sm = need(objs, 'ServiceMonitor', 'chikai-proxy', 'knative-serving');
  const svc = objs.find((o) => o['kind'] === 'Service' && selects(map(sm, 'spec', 'selector', 'matchLabels'), map(o, 'metadata', 'labels')) && (dig(sm, 'spec', 'namespaceSelector', 'matchNames') as string[]).includes(str(o, 'metadata', 'namespace')!))!;
  t.ok(svc, 'the ServiceMonitor selects a Service');
  const ds = need(objs, 'DaemonSet', 'chikai-proxy', 'knative-serving');
  t.ok(selects(map(svc, 'spec', 'selector'), map(ds, 'spec', 'template', 'metadata', 'labels')), 'which selects the proxy pods');
  const endpoint = list(sm, 'spec', 'endpoints')[0];
  const port = list(svc, 'spec', 'ports').find((p) => p['name'] === endpoint['port']);
  t.equal(port?.['port'], 9090, 'the metrics port');
  t.equal(endpoint['honorLabels'], true, 'the proxies\' node label is kept');

  const cm = need(objs, 'ConfigMap', 'chikai-grafana-dashboard');
  t.equal(map(cm, 'metadata', 'labels')['grafana_dashboard'], '1');
  const dashboard = JSON.parse(Object.values(map(cm, 'data'))[0]) as Obj;
  const exprs = list(dashboard, 'panels').flatMap((p) => list(p, 'targets').map((x) => String(x['expr'])));
  const all = exprs.join('\n');
  for (const [what, re] of [
    ['RTT matrix', /latency_between_nodes/],
    ['local share per node', /chikai_requests_total.*target_node/],
    ['queue depth', /chikai_requests_buffered/],
    ['latency percentiles', /histogram_quantile\(0\.99, .*chikai_request_duration_seconds_bucket/],
  ] as const) t.match(all, re, `dashboard: ${what}`);
  const rtt = list(dashboard, 'panels').find((p) => list(p, 'targets').some((x) => String(x['expr']).includes('latency_between_nodes')));
  t.equal(str(list(rtt, 'transformations')[0], 'id'), 'groupingToMatrix', 'the RTT panel is a from × to matrix');

  // Every metric the dashboard queries exists in the proxy's or the xDS server's registry.
  const exported = readFileSync(join(ROOT, 'proxy/metrics.ts'), 'utf8') + readFileSync(join(ROOT, 'xds/metrics.ts'), 'utf8');
  const used = new Set([...all.matchAll(/\b(latency_between_nodes|chikai_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?=[{[(\s)]|$)/g)].map((m) => m[1]));
  for (const name of used) t.ok(exported.includes(`'${name}'`), `metric ${name} is exported`);
});
