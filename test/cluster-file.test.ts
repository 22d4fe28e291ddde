// The cluster file refuses a field it does not know, wherever it is: a misspelt setting
// (`drainSecond:`) would otherwise be dropped silently and the default used.
import t from 'tap';
import { parseClusterFile } from '../cluster/config.js';

const BASE = [
  'nodes: [{ name: node1, address: 127.0.1.1 }]',
  'latency: [{ between: [node1, node1], rttMs: 0 }]',
  'revisions: [{ service: s, name: s-00001 }]',
  'pods: [{ revision: default/s-00001, node: node1 }]',
  'endpoints: [{ pod: p, revision: default/s-00001, node: node1, address: 127.0.2.1, port: 9000 }]',
  'proxy: { port: 8012, drainSeconds: 1 }',
  'xds: { listen: "127.0.0.1:18000" }',
].join('\n');

t.test('every known field is read', async (t) => {
  const f = parseClusterFile(BASE, 'c.yaml');
  t.equal(f.proxy.drainSeconds, 1);
  t.same(f.xds.listen, { host: '127.0.0.1', port: 18000 });
  t.equal(f.state.endpoints.length, 1);
});

t.test('an unknown field is refused with file, line, field and the fields it could be', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['proxy: { port: 8012, drainSeconds: 1 }', 'proxy: { port: 8012, drainSecond: 1 }', /^c\.yaml:6: proxy\.drainSecond: expected only the fields port, h2cPort, adminPort, policy, drainSeconds, /],
    ['xds: { listen: "127.0.0.1:18000" }', 'xds: { listen: "127.0.0.1:18000", adminn: "127.0.0.1:18001" }', /^c\.yaml:7: xds\.adminn: expected only the fields listen, admin/],
    ['name: s-00001 }', 'name: s-00001, containerconcurrency: 1 }', /^c\.yaml:3: revisions\[0\]\.containerconcurrency: expected only the fields namespace, service, name, hosts, containerConcurrency/],
    ['node: node1 }]\nendpoints', 'node: node1, capacty: 2 }]\nendpoints', /^c\.yaml:4: pods\[0\]\.capacty: expected only the fields name, revision, node, serviceTimeMs, capacity/],
    ['port: 9000 }', 'port: 9000, redy: false }', /^c\.yaml:5: endpoints\[0\]\.redy: expected only the fields pod, revision, node, address, port, ready/],
    ['rttMs: 0 }', 'rttMs: 0, jitter: 1 }', /^c\.yaml:2: latency\[0\]\.jitter: expected only the fields between, rttMs, jitterMs/],
  ];
  for (const [from, to, message] of cases) {
    const text = BASE.replace(from, to);
    t.not(text, BASE, `the case edits the file (${to})`);
    t.throws(() => parseClusterFile(text, 'c.yaml'), { name: 'ConfigError', message }, to);
  }
});
