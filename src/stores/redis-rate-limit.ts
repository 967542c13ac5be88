/**
 * Upgrade rate limit shared by every node through Redis: the same token bucket as the
 * in-process limiter, kept in one hash per address and updated by a script so concurrent
 * nodes never race. Time comes from Redis (TIME), so node clocks need not agree.
 * One key per address and one key per script call, so it runs unchanged on Redis Cluster
 * (each address's bucket lives in its own slot) and on a Sentinel-managed primary.
 */
import { WsdsError } from '../core/errors.ts'
import type { RateLimiter } from '../core/rate-limit.ts'
import type { RedisClient } from './redis.ts'

export interface RedisRateLimiterOptions {
  client: RedisClient
  perSecond: number
  /** Bucket size (default 2 x perSecond). */
  burst?: number
  prefix?: string
}

const BUCKET_SCRIPT = `
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local b = redis.call('HMGET', KEYS[1], 't', 'a')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return ok`

type LimiterRedis = RedisClient & { wsdsBucket(key: string, perSecond: number, burst: number): Promise<number> }

export function createRedisRateLimiter(options: RedisRateLimiterOptions): RateLimiter {
  const { perSecond } = options
  const burst = options.burst ?? perSecond * 2
  if (!(perSecond > 0) || !Number.isFinite(perSecond)) {
    throw new WsdsError('ERR_CONFIG', `rate limit must be a positive number per second, got ${perSecond}`)
  }
  const client = options.client as LimiterRedis
  if (typeof client.wsdsBucket !== 'function') client.defineCommand('wsdsBucket', { numberOfKeys: 1, lua: BUCKET_SCRIPT })
  const prefix = `${options.prefix ?? 'wsds:'}rl:`
  return {
    take: async (address) => (await client.wsdsBucket(prefix + address, perSecond, burst)) === 1,
  }
}
