// chikai's KIngress hash against golden vectors computed by Knative's own code
// (test/golden/ingress-hash: knative.dev/networking ComputeHash after SetDefaults, for
// KIngress objects as the API server sends them). The prober compares this hash byte for
// byte, so every vector must match exactly.
import t from 'tap';
import { goEncodedIngressSpec, IngressSpecError, kingressHash } from '../cluster/kubernetes/ingress-hash.js';
import { ingressRoutesFrom } from '../cluster/kubernetes/ingress.js';
import { goldenIngresses } from './fixtures/ingress-golden.js';
import { kingress } from './fixtures/kubernetes/objects.js';

const golden = goldenIngresses();

t.test(`every golden vector (knative.dev/networking ${golden.networking})`, async (t) => {
  t.ok(golden.vectors.length >= 10, 'the vectors are all there');
  for (const v of golden.vectors) {
    const { namespace, name } = v.ingress.metadata;
    t.equal(goEncodedIngressSpec(v.ingress.spec), v.specJson, `${v.name}: Go's encoding of the defaulted spec (${v.description})`);
    t.equal(kingressHash(namespace, name, v.ingress.spec), v.hash, `${v.name}: ComputeHash`);
    t.equal(ingressRoutesFrom(v.ingress)?.hash, v.hash, `${v.name}: the hash a parsed KIngress carries`);
  }
});

t.test('the hash follows every change Knative would hash, and nothing else', async (t) => {
  const base = kingress('default', 'hello', [{ revision: 'hello-00001', percent: 100 }]);
  const hash = (o: Record<string, unknown>) => ingressRoutesFrom(o)?.hash;
  const h0 = hash(base);
  t.match(h0, /^[0-9a-f]{64}$/);
  const relabelled = structuredClone(base) as { metadata: Record<string, unknown>; status?: unknown };
  relabelled.metadata['labels'] = { other: 'label' };
  relabelled.metadata['generation'] = 7;
  relabelled.status = { observedGeneration: 7 };
  t.equal(hash(relabelled), h0, 'labels, generation and status are not hashed');
  const moved = structuredClone(base) as { metadata: Record<string, unknown> };
  moved.metadata['namespace'] = 'other';
  t.not(hash(moved), h0, 'the namespace is');
  const split = kingress('default', 'hello', [{ revision: 'hello-00001', percent: 99 }, { revision: 'hello-00002', percent: 1 }]);
  t.not(hash(split), h0, 'and so is a new traffic split');
});

t.test('a value Go could not decode: no hash, a clear reason, the routes still parsed', async (t) => {
  const bad = kingress('default', 'hello', [{ revision: 'hello-00001', percent: 100 }]);
  const spec = bad['spec'] as { rules: { http: { paths: { splits: Record<string, unknown>[] }[] } }[] };
  spec.rules[0].http.paths[0].splits = [{ ...spec.rules[0].http.paths[0].splits[0], percent: 'all' }];
  t.throws(() => kingressHash('default', 'hello', bad['spec']), new IngressSpecError('spec.rules[0].http.paths[0].splits[0].percent: expected an integer, got "all"'));
  spec.rules[0].http.paths[0].splits = [{ ...spec.rules[0].http.paths[0].splits[0], percent: 100, servicePort: 2 ** 31 }];
  t.throws(() => kingressHash('default', 'hello', bad['spec']), /servicePort: expected an integer, got 2147483648/, 'IntOrString holds an int32');
  const r = ingressRoutesFrom(bad);
  t.equal(r?.hash, undefined, 'no hash, so no probe routes: the KIngress is not reported Ready');
  t.equal(r?.rules.length, 2, 'the routes themselves are still served');
});
