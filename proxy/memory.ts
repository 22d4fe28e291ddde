// Streamed bodies leave one garbage Buffer per socket read. V8 only collects them when its
// young generation fills or their total passes its external-memory limit (~64 MB), so a
// proxy streaming a large upload grows by tens of MB of garbage before the first
// collection. A cheap timer watches the ArrayBuffer total and asks for a young-generation
// collection once it grew by `thresholdBytes`, which keeps streaming memory flat.
import v8 from 'node:v8';
import vm from 'node:vm';

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void;

function exposeGc(): GcFunction | undefined {
  const existing = (globalThis as { gc?: GcFunction }).gc;
  if (existing) return existing;
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as GcFunction | undefined;
  return typeof gc === 'function' ? gc : undefined;
}

/** Memory held outside the JS heap (Buffers' backing stores); cheaper to read than memoryUsage(). */
function externalBytes(): number {
  return (v8.getHeapStatistics() as v8.HeapInfo & { external_memory?: number }).external_memory ?? process.memoryUsage().arrayBuffers;
}

export class StreamingGarbageCollector {
  private timer: NodeJS.Timeout | undefined;
  private baseline = 0;
  private readonly gc = exposeGc();
  collections = 0;

  constructor(private readonly thresholdBytes = 4 * 1024 * 1024, private readonly intervalMs = 10) {}

  start(): void {
    if (!this.gc || this.timer) return;
    this.baseline = externalBytes();
    this.timer = setInterval(() => {
      const now = externalBytes();
      if (now - this.baseline > this.thresholdBytes) {
        this.gc!({ type: 'minor' });
        this.collections++;
        this.baseline = externalBytes();
      } else if (now < this.baseline) {
        this.baseline = now;
      }
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
