// What deploy/ exposes: every overlay rendered with `kubectl kustomize`, no host port or
// host network anywhere, and every container port of chikai's pods covered by a
// NetworkPolicy that names its clients (no rule open to all sources or all ports).
import t from 'tap';
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OVERLAYS = readdirSync(join(ROOT, 'deploy/overlays')).sort();
const KUBECTL = process.env['KUBECTL'] ?? 'kubectl';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);
const objAt = (o: unknown, k: string): Obj => (isObj(o) && isObj(o[k]) ? o[k] : {});
const listAt = (o: unknown, k: string): Obj[] => (isObj(o) && Array.isArray(o[k]) ? (o[k] as unknown[]).filter(isObj) : []);
const labelsAt = (o: unknown, k: string): Record<string, string> => Object.fromEntries(Object.entries(objAt(o, k)).map(([a, b]) => [a, String(b)]));

async function render(overlay: string): Promise<Obj[]> {
  const { stdout } = await run(KUBECTL, ['kustomize', join(ROOT, 'deploy/overlays', overlay)], { maxBuffer: 16 << 20 });
  return parseAllDocuments(stdout).map((d) => d.toJS() as unknown).filter(isObj);
}

/** Every path in `o` where `key` is set to something other than false/undefined. */
function uses(o: unknown, key: string, path = ''): string[] {
  if (Array.isArray(o)) return o.flatMap((x, i) => uses(x, key, `${path}[${i}]`));
  if (!isObj(o)) return [];
  return Object.entries(o).flatMap(([k, v]) => [...(k === key && v !== false && v !== undefined ? [`${path}.${k}`] : []), ...uses(v, key, `${path}.${k}`)]);
}

/** A label selector's matchLabels/matchExpressions (In only) against labels. */
function matches(selector: Obj, labels: Record<string, string>): boolean {
  const ml = labelsAt(selector, 'matchLabels');
  const exprs = listAt(selector, 'matchExpressions');
  return Object.entries(ml).every(([k, v]) => labels[k] === v)
    && exprs.every((e) => e['operator'] === 'In' && Array.isArray(e['values']) && (e['values'] as unknown[]).includes(labels[String(e['key'])]));
}

const selectorText = (s: Obj) => [
  ...Object.entries(labelsAt(s, 'matchLabels')).map(([k, v]) => `${k}=${v}`),
  ...listAt(s, 'matchExpressions').map((e) => `${String(e['key'])} in (${(e['values'] as string[]).join(',')})`),
].join(',') || '(all)';

/** One NetworkPolicy peer in words: whom it names. */
function peerText(peer: Obj, policyNamespace: string): string {
  if (isObj(peer['ipBlock'])) return `ip ${String(objAt(peer, 'ipBlock')['cidr'])}`;
  const ns = isObj(peer['namespaceSelector']) ? `ns ${selectorText(objAt(peer, 'namespaceSelector'))}` : `ns ${policyNamespace}`;
  return isObj(peer['podSelector']) ? `${ns} pods ${selectorText(objAt(peer, 'podSelector'))}` : `${ns} (every pod)`;
}

interface Workload { readonly namespace: string; readonly name: string; readonly labels: Record<string, string>; readonly ports: { readonly name?: string; readonly port: number }[] }

function chikaiWorkloads(objs: Obj[]): Workload[] {
  return objs
    .filter((o) => ['DaemonSet', 'Deployment', 'StatefulSet'].includes(String(o['kind'])))
    .map((o) => {
      const template = objAt(objAt(o, 'spec'), 'template');
      const ports = listAt(objAt(template, 'spec'), 'containers').flatMap((c) => listAt(c, 'ports'))
        .map((p) => ({ name: typeof p['name'] === 'string' ? p['name'] : undefined, port: Number(p['containerPort']) }));
      return { namespace: String(objAt(o, 'metadata')['namespace']), name: String(objAt(o, 'metadata')['name']), labels: labelsAt(objAt(template, 'metadata'), 'labels'), ports };
    })
    .filter((w) => w.labels['app.kubernetes.io/part-of'] === 'chikai');
}

/** For each port of `w`: the clients every policy selecting `w` lets in on it. */
function clientsByPort(objs: Obj[], w: Workload): Map<number, string[]> {
  const policies = objs.filter((o) => o['kind'] === 'NetworkPolicy' && objAt(o, 'metadata')['namespace'] === w.namespace)
    .filter((p) => matches(objAt(objAt(p, 'spec'), 'podSelector'), w.labels) && (objAt(p, 'spec')['policyTypes'] as string[] | undefined ?? ['Ingress']).includes('Ingress'));
  const out = new Map<number, string[]>(w.ports.map((p) => [p.port, []]));
  for (const p of policies) {
    for (const rule of listAt(objAt(p, 'spec'), 'ingress')) {
      const from = listAt(rule, 'from');
      const ports = listAt(rule, 'ports');
      // A rule without sources or without ports opens the pod to everyone or on every port.
      const clients = from.length ? from.map((peer) => peerText(peer, w.namespace)) : ['ANYONE (rule without from)'];
      for (const wp of w.ports) {
        if (ports.length && !ports.some((rp) => rp['port'] === wp.port || (wp.name !== undefined && rp['port'] === wp.name))) continue;
        out.get(wp.port)!.push(...(ports.length ? clients : clients.map((c) => `${c} on EVERY port`)));
      }
    }
  }
  return out;
}

const rendered = new Map<string, Obj[]>();
t.before(async () => {
  for (const o of OVERLAYS) rendered.set(o, await render(o));
});

t.test('no object of any overlay uses a host port or the host network', async (t) => {
  t.ok(rendered.size >= 3, 'every overlay rendered');
  for (const [overlay, objs] of rendered) {
    for (const o of objs) {
      const id = `${overlay}: ${String(o['kind'])} ${String(objAt(o, 'metadata')['name'])}`;
      t.same([...uses(o, 'hostPort'), ...uses(o, 'hostNetwork')], [], `${id}: no hostPort, no hostNetwork`);
    }
  }
});

t.test('every container port of chikai\'s pods is covered by a policy naming its clients', async (t) => {
  for (const [overlay, objs] of rendered) {
    const workloads = chikaiWorkloads(objs);
    t.ok(workloads.length >= 2, `${overlay}: chikai's workloads found`);
    for (const w of workloads) {
      for (const [port, clients] of clientsByPort(objs, w)) {
        const where = `${overlay}: ${w.namespace}/${w.name}:${port}`;
        t.ok(clients.length > 0, `${where}: a NetworkPolicy covers it`);
        t.notOk(clients.some((c) => /ANYONE|EVERY port/.test(c)), `${where}: no rule open to every source or every port`);
      }
    }
  }
});

t.test('who reaches which port (the full install)', async (t) => {
  const objs = rendered.get('full-monitoring')!;
  const table: Record<string, string[]> = {};
  for (const w of chikaiWorkloads(objs)) for (const [port, clients] of clientsByPort(objs, w)) table[`${w.name}:${port}`] = clients;
  const gateways = 'ns kubernetes.io/metadata.name=kourier-system pods app.kubernetes.io/name=chikai-kourier-gateway';
  const proxies = 'ns kubernetes.io/metadata.name=knative-serving pods app.kubernetes.io/name=chikai-proxy';
  const monitoring = 'ns kubernetes.io/metadata.name=monitoring (every pod)';
  t.same(table, {
    'chikai-proxy:8012': [
      'ns kubernetes.io/metadata.name=kourier-system pods app=3scale-kourier-gateway',
      'ns knative-serving pods app.kubernetes.io/name=chikai-proxy',
      'ns knative-serving pods app in (controller,autoscaler)',
    ],
    'chikai-proxy:9090': [monitoring],
    'chikai-xds:18000': [gateways, proxies],
    'chikai-xds:18080': [monitoring],
    'chikai-kourier-gateway:8080': ['ip 0.0.0.0/0', 'ip ::/0'],
    'chikai-kourier-gateway:8081': ['ns (all) (every pod)'],
    'chikai-kourier-gateway:8443': ['ip 0.0.0.0/0', 'ip ::/0'],
    'chikai-kourier-gateway:8090': ['ns kubernetes.io/metadata.name=knative-serving pods app=net-kourier-controller'],
    'chikai-kourier-gateway:9000': [monitoring],
  });
});
