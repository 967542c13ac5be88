/**
 * The rate limiter's interface: the gateway's in-memory token bucket
 * (src/gateway/rate-limit.ts) and the shared Redis one (src/stores/redis-rate-limit.ts)
 * implement it, and the fronts depend on this, not on either.
 */
export interface RateLimiter {
  /** Takes one token for `key`; false means over the limit (answer 429). Shared limiters answer async. */
  take(key: string): boolean | Promise<boolean>
}
