/**
 * A fixed-bucket histogram of durations kept in plain integers. Observing is a short scan
 * and an increment, cheap enough for the handshake and request paths; the metrics adapter
 * turns it into Prometheus buckets only when scraped.
 */
export interface DurationHistogram {
  /** Upper bounds in seconds, ascending; +Inf is implicit. */
  readonly bounds: readonly number[]
  /** Count per bucket (not cumulative); the last entry is the +Inf bucket. */
  readonly counts: readonly number[]
  readonly count: number
  /** Sum of observations, seconds. */
  readonly sum: number
  observe(seconds: number): void
}

/** 0.5 ms to 5 s: handshakes take milliseconds; decisions (cache hits) microseconds. */
export const DEFAULT_DURATION_BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export function createDurationHistogram(bounds: readonly number[] = DEFAULT_DURATION_BOUNDS): DurationHistogram {
  const counts = new Array<number>(bounds.length + 1).fill(0)
  const h = {
    bounds,
    counts,
    count: 0,
    sum: 0,
    observe(seconds: number) {
      let i = 0
      while (i < bounds.length && seconds > bounds[i]!) i++
      counts[i]!++
      h.count++
      h.sum += seconds
    },
  }
  return h
}
