/**
 * Per-address token bucket for upgrades (PROTOCOL.md, Limits: configurable, can be switched
 * off, and the default admits at least 100 parallel handshakes from one address).
 */
import { WsdsError } from '../core/errors.ts'
import type { RateLimiter } from '../core/rate-limit.ts'

export type { RateLimiter } from '../core/rate-limit.ts'

export interface RateLimiterOptions {
  /** Sustained upgrades per second per address. */
  perSecond: number
  /** Bucket size: how many may arrive at once (default 2 x perSecond). */
  burst?: number
  /** Addresses tracked at once; the map is swept of full buckets when it reaches this (default 50000). */
  maxKeys?: number
  now?: () => number
}

interface Bucket {
  tokens: number
  at: number
}

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const { perSecond } = options
  const burst = options.burst ?? perSecond * 2
  const maxKeys = options.maxKeys ?? 50_000
  const now = options.now ?? Date.now
  if (!(perSecond > 0) || !Number.isFinite(perSecond)) {
    throw new WsdsError('ERR_CONFIG', `rate limit must be a positive number per second, got ${perSecond}`)
  }
  if (!(burst >= 1)) throw new WsdsError('ERR_CONFIG', `rate limit burst must be at least 1, got ${burst}`)
  const buckets = new Map<string, Bucket>()
  const refill = (b: Bucket, t: number) => {
    b.tokens = Math.min(burst, b.tokens + ((t - b.at) * perSecond) / 1000)
    b.at = t
  }
  const sweep = (t: number) => {
    for (const [key, b] of buckets) {
      refill(b, t)
      if (b.tokens >= burst) buckets.delete(key)
    }
    // Under a flood of distinct addresses nothing is full; bound memory by starting over,
    // which errs towards admitting (each address gets a fresh bucket).
    if (buckets.size >= maxKeys) buckets.clear()
  }
  return {
    take(key) {
      const t = now()
      let b = buckets.get(key)
      if (b === undefined) {
        if (buckets.size >= maxKeys) sweep(t)
        b = { tokens: burst, at: t }
        buckets.set(key, b)
      } else {
        refill(b, t)
      }
      if (b.tokens < 1) return false
      b.tokens -= 1
      return true
    },
  }
}
