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
  /** What else a reader needs to redo the report (the paper's settings, its oracle selection); written as `detail`. */
  readonly detail?: object;
  readonly markdown: string;
  /** SVG charts by file name suffix (`cdf` → paper-cdf.svg). */
  readonly charts: Readonly<Record<string, string>>;
}
