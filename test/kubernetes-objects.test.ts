// How Kubernetes and Knative objects become model entries and IngressRoutes, including
// the shapes real clusters produce that the happy path does not.
import t from 'tap';
import { mergeSliceEndpoints, nodeInfoFrom, revisionInfoFrom, sliceEndpointsFrom } from '../cluster/kubernetes/objects.js';
import { ingressRoutesFrom } from '../cluster/kubernetes/ingress.js';
import { kingress, privateSlice } from './fixtures/kubernetes/objects.js';

t.test('nodes: InternalIP (IPv4 first on dual-stack), topology labels with legacy fallback', async (t) => {
  t.same(nodeInfoFrom({
    metadata: { name: 'n1', labels: { 'failure-domain.beta.kubernetes.io/region': 'eu', 'failure-domain.beta.kubernetes.io/zone': 'eu-1' } },
    status: { addresses: [{ type: 'InternalIP', address: 'fd00::5' }, { type: 'InternalIP', address: '192.168.1.5' }, { type: 'Hostname', address: 'n1' }] },
  }), { name: 'n1', region: 'eu', zone: 'eu-1', address: '192.168.1.5' });
  t.same(nodeInfoFrom({ metadata: { name: 'n2' }, status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.9' }] } }),
    { name: 'n2', region: 'default', zone: 'default', address: '203.0.113.9' }, 'ExternalIP when there is no InternalIP');
  t.equal(nodeInfoFrom({ metadata: { name: 'n3' }, status: {} }), undefined, 'a node without an address yet is left out');
  t.equal(nodeInfoFrom({ metadata: {} }), undefined);
});

t.test('revisions: Knative defaults, h2c, revisions without a service', async (t) => {
  t.same(revisionInfoFrom({ metadata: { name: 'fn-00003', namespace: 'apps', labels: { 'serving.knative.dev/configuration': 'fn' } }, spec: { containers: [{ ports: [{ name: 'h2c', containerPort: 8080 }] }] } }),
    { namespace: 'apps', service: 'fn', name: 'fn-00003', hosts: [], containerConcurrency: 0, timeoutSeconds: 300, responseStartTimeoutSeconds: 0, protocol: 'h2c' });
  t.same(revisionInfoFrom({ metadata: { name: 'ws-00001', namespace: 'apps' }, spec: { timeoutSeconds: 600, responseStartTimeoutSeconds: 30, idleTimeoutSeconds: 20, containers: [{}] } }),
    { namespace: 'apps', service: 'ws-00001', name: 'ws-00001', hosts: [], containerConcurrency: 0, timeoutSeconds: 600, responseStartTimeoutSeconds: 30, idleTimeoutSeconds: 20, protocol: 'http1' },
    'Knative\'s response-start and idle timeouts from the revision spec');
  t.equal(revisionInfoFrom({ metadata: { name: 'x' } }), undefined, 'a revision needs a namespace');
});

t.test('endpoint slices: readiness, ports by name, revision from the label, odd endpoints', async (t) => {
  const slice = privateSlice('apps', 'fn-00003', [{ pod: 'a', ip: '10.1.0.1', node: 'n1' }]);
  // Knative shortens long private-service names with a hash; the revision label still tells.
  (slice.metadata.labels as Record<string, string>)['kubernetes.io/service-name'] = 'fn-00003-private-3f2a9c';
  slice['ports'] = [{ name: 'http2', port: 8013 }, { name: 'https', port: 8112 }];
  slice['endpoints'] = [
    { addresses: ['10.1.0.1'], conditions: {}, nodeName: 'n1', targetRef: { kind: 'Pod', name: 'a' } },
    { addresses: ['10.1.0.2'], conditions: { ready: false, serving: true, terminating: true }, nodeName: 'n2', targetRef: { kind: 'Pod', name: 'b' } },
    { addresses: ['10.1.0.3'], conditions: { ready: true }, targetRef: { kind: 'Pod', name: 'c' } },
    { addresses: ['10.1.0.4'], conditions: { ready: true }, nodeName: 'n1' },
  ];
  t.same(sliceEndpointsFrom(slice), {
    revision: 'apps/fn-00003',
    endpoints: [
      { pod: 'a', revision: 'apps/fn-00003', node: 'n1', address: '10.1.0.1', port: 8013, ready: true },
      { pod: 'b', revision: 'apps/fn-00003', node: 'n2', address: '10.1.0.2', port: 8013, ready: false },
      { pod: 'fn-00003-private-abcde-10.1.0.4', revision: 'apps/fn-00003', node: 'n1', address: '10.1.0.4', port: 8013, ready: true },
    ],
  }, 'nil ready counts as ready, terminating does not, no node means no endpoint');

  const moving = [
    privateSlice('apps', 'fn-00003', [{ pod: 'a', ip: '10.1.0.1', node: 'n1', ready: false }], 's1'),
    privateSlice('apps', 'fn-00003', [{ pod: 'a', ip: '10.1.0.1', node: 'n1' }, { pod: 'b', ip: '10.1.0.2', node: 'n2' }], 's2'),
  ];
  t.same(mergeSliceEndpoints(moving).map((e) => [e.pod, e.ready]), [['a', true], ['b', true]], 'a pod in two slices appears once, ready');
});

t.test('KIngress: defaults, header matches, rewrites, TLS', async (t) => {
  const ing = kingress('apps', 'fn', [{ revision: 'fn-00003', percent: 100 }]);
  const spec = ing['spec'] as { rules: { visibility?: string; http: { paths: Record<string, unknown>[] } }[]; tls?: unknown };
  delete spec.rules[1].visibility;
  const path = spec.rules[1].http.paths[0];
  delete (path['splits'] as Record<string, unknown>[])[0]['percent'];
  path['path'] = '/api';
  path['headers'] = { 'K-Network-Hash': { exact: 'override' } };
  path['rewriteHost'] = 'fn.apps.svc.cluster.local';
  path['appendHeaders'] = { 'K-Original-Host': 'fn.example.com' };
  spec.tls = [{ hosts: ['FN.example.com'], secretName: 'fn-tls' }];
  const r = ingressRoutesFrom(ing)!;
  const rule = r.rules[1];
  t.equal(rule.visibility, 'ExternalIP', 'visibility defaults to ExternalIP');
  t.same(rule.paths[0], {
    path: '/api',
    headers: { 'K-Network-Hash': 'override' },
    rewriteHost: 'fn.apps.svc.cluster.local',
    appendHeaders: { 'K-Original-Host': 'fn.example.com' },
    splits: [{ serviceNamespace: 'apps', serviceName: 'fn-00003', servicePort: 80, percent: 100, appendHeaders: { 'Knative-Serving-Namespace': 'apps', 'Knative-Serving-Revision': 'fn-00003' }, revision: 'apps/fn-00003' }],
  }, 'a lone split without a percent takes 100');
  t.same(r.tls, [{ hosts: ['fn.example.com'], secretNamespace: 'apps', secretName: 'fn-tls' }]);
  t.equal(r.ingressClass, 'kourier.ingress.networking.knative.dev');
  t.equal(r.httpOption, 'Enabled');
  t.match(r.hash, /^[0-9a-f]{64}$/, 'the spec hash for the probe routes is computed at parse time');
});
