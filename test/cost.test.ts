import t from 'tap';
import { expectedCompletionMs } from '../cluster/cost.js';

t.test('idle pod costs its rtt plus its service time', async (t) => {
  t.equal(expectedCompletionMs({ pod: 'p', node: 'n', rttMs: 50, inFlight: 0, capacity: 1, serviceTimeMs: 4, reachable: true }), 54);
});
