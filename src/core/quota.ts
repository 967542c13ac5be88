/**
 * Per-connection quota (PROTOCOL.md, "Per-connection quota"): a token bucket per connectionId,
 * N admitted requests per second, bursts of 2N. Kept in memory per front: on one node the
 * budget is exact; across a cluster each node keeps its own, so an id gets at most N per
 * second per node (docs/cluster.md).
 */
import { WsdsError } from './errors.ts'

export interface QuotaOptions {
  /** Admitted requests per second per id. */
  perSecond: number
  /** Ids tracked at once; full buckets are swept when it is reached (default 100000). */
  maxIds?: number
}

export interface Quota {
  /** Takes one request from `id`'s budget: 0 when admitted, else the ms until one is available. */
  take(id: string, now: number): number
  readonly size: number
}

interface Bucket {
  tokens: number
  at: number
}

/** Parses `WSDS_ID_RATE_LIMIT`: `off` or a positive integer. */
export function parseIdRateLimit(value: string): number | null {
  if (value === 'off') return null
  if (/^[1-9]\d{0,8}$/.test(value)) return Number(value)
  throw new WsdsError('ERR_CONFIG', `id rate limit must be off or a positive integer, got ${JSON.stringify(value)}`)
}

export function createQuota(options: QuotaOptions): Quota {
  const { perSecond } = options
  if (!Number.isFinite(perSecond) || perSecond <= 0) {
    throw new WsdsError('ERR_CONFIG', `id rate limit must be a positive number per second, got ${perSecond}`)
  }
  const burst = perSecond * 2
  const maxIds = options.maxIds ?? 100_000
  const buckets = new Map<string, Bucket>()
  const refill = (b: Bucket, t: number) => {
    // A clock that steps back must not mint tokens (or take them).
    if (t > b.at) b.tokens = Math.min(burst, b.tokens + ((t - b.at) * perSecond) / 1000)
    b.at = t
  }
  const sweep = (t: number) => {
    for (const [id, b] of buckets) {
      refill(b, t)
      if (b.tokens >= burst) buckets.delete(id)
    }
    // Ids are verified connections, so this needs maxIds live, busy sockets; starting over
    // then errs towards admitting rather than growing without bound.
    if (buckets.size >= maxIds) buckets.clear()
  }
  return {
    take(id, t) {
      let b = buckets.get(id)
      if (b === undefined) {
        if (buckets.size >= maxIds) sweep(t)
        b = { tokens: burst, at: t }
        buckets.set(id, b)
      } else refill(b, t)
      if (b.tokens >= 1) {
        b.tokens -= 1
        return 0
      }
      return Math.ceil(((1 - b.tokens) * 1000) / perSecond)
    },
    get size() {
      return buckets.size
    },
  }
}
