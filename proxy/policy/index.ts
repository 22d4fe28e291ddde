// Policies by name, for `--policy` and `proxy.policy`.
import { ChikaiPolicy } from './chikai.js';
import { FaastPolicy } from './faast.js';
import { KnativePolicy } from './knative.js';
import { LocalOnlyPolicy } from './local-only.js';
import { PeakEwmaPolicy } from './peak-ewma.js';
import type { Policy } from './policy.js';
import { RoundRobinPolicy } from './round-robin.js';

export type { Policy, PickContext } from './policy.js';

const FACTORIES: Record<string, () => Policy> = {
  chikai: () => new ChikaiPolicy(),
  knative: () => new KnativePolicy(),
  'round-robin': () => new RoundRobinPolicy(),
  'local-only': () => new LocalOnlyPolicy(),
  faast: () => new FaastPolicy(),
  'peak-ewma': () => new PeakEwmaPolicy(),
};

export const POLICY_NAMES: readonly string[] = Object.keys(FACTORIES);

export class UnknownPolicyError extends Error {
  constructor(name: string, where: string) {
    super(`${where}: unknown policy ${JSON.stringify(name)}: expected one of ${POLICY_NAMES.join(', ')}`);
  }
}

export function createPolicy(name: string, where = '--policy'): Policy {
  const make = FACTORIES[name];
  if (!make) throw new UnknownPolicyError(name, where);
  return make();
}
