// Time, injected. Everything in chikai that reads the time or waits for it (the request
// timeout, the queue's deadlines, RTT probing, load tracking, the autoscaler's periods,
// the emulated pods and network) takes a Clock, so tests drive timing logic with a
// manual clock instead of waiting for (and measuring) real time.

export interface Timer {
  cancel(): void;
  /** Do not keep the process alive for this timer (background loops). */
  unref(): this;
}

export interface Clock {
  /**
   * Milliseconds since the Unix epoch, with sub-millisecond resolution, on a monotonic
   * scale (it does not jump with the wall clock). One scale for durations and for the
   * absolute deadlines clients send.
   */
  now(): number;
  /** Run `fn` once, `ms` from now. */
  after(ms: number, fn: () => void): Timer;
}

class SystemTimer implements Timer {
  constructor(private readonly handle: NodeJS.Timeout) {}
  cancel(): void {
    clearTimeout(this.handle);
  }
  unref(): this {
    this.handle.unref();
    return this;
  }
}

// setTimeout cannot wait longer than this; a longer wait is armed in steps.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The real clock: performance.now() anchored at the process's start time. */
export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  after: (ms, fn) => new SystemTimer(setTimeout(fn, Math.min(MAX_TIMER_MS, Math.max(0, ms)))),
};

/** Run `fn` every `ms` until the returned timer is cancelled. */
export function every(clock: Clock, ms: number, fn: () => void): Timer {
  let current: Timer | undefined;
  let stopped = false;
  let background = false;
  const arm = () => {
    current = clock.after(ms, () => {
      if (stopped) return;
      arm();
      fn();
    });
    if (background) current.unref();
  };
  arm();
  return {
    cancel() {
      stopped = true;
      current?.cancel();
    },
    unref() {
      background = true;
      current?.unref();
      return this;
    },
  };
}
