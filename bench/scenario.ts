// What every scenario gets and gives back.
import type { BenchArgs } from './cli.js';
import type { MachineInfo } from './machine.js';

export interface ScenarioContext {
  readonly args: BenchArgs;
  readonly machine: MachineInfo;
  /** Progress lines (stderr). */
  readonly log: (line: string) => void;
}

/** The JSON rows, the Markdown report and the SVG charts of one run. */
export interface ScenarioOutput {
  readonly rows: readonly object[];
  readonly markdown: string;
  /** SVG charts by file name suffix (`cdf` → paper-cdf.svg). */
  readonly charts: Readonly<Record<string, string>>;
}
