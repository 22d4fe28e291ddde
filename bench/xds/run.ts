import type { ScenarioContext, ScenarioOutput } from '../scenario.js';

export async function runXds(_ctx: ScenarioContext): Promise<ScenarioOutput> {
  throw new Error('not yet');
}
