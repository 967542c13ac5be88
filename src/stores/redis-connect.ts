/**
 * WSDS_STORE URL -> ioredis client, for the three Redis topologies PROTOCOL.md names
 * ("Limits and defaults"):
 *
 *   redis://[user:pass@]host:port/db          one Redis (or a managed failover endpoint)
 *   rediss://...                              the same over TLS
 *   redis-sentinel://[user:pass@]h1:p1,h2:p2/<master-name>[?db=N]
 *   redis-cluster://[user:pass@]h1:p1,h2:p2
 *
 * Credentials in the userinfo are for the Redis nodes (not the sentinels); the exact grammar
 * is in docs/protocol.md. Every topology gets the same fail-fast client settings
 * (REDIS_CLIENT_DEFAULTS): a command while no primary answers fails at once, so the
 * authenticator answers 503 instead of waiting.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { REDIS_CLIENT_DEFAULTS, connectRedis, type RedisClient } from './redis.ts'
import { parseRedisStoreUrl } from './redis-url.ts'

export { describeRedisUrl, isRedisStoreUrl, parseRedisStoreUrl, redact, type HostPort, type RedisTopology } from './redis-url.ts'
export type { RedisClient }

export interface ConnectOptions {
  /** Extra ioredis options for every node connection (tests shorten timeouts with these). */
  redis?: RedisOptions
}

/**
 * Opens the client a Redis WSDS_STORE URL names. The client connects in the background;
 * `createRedisStore(...).ready()` says when it is usable.
 */
export function connectRedisStore(url: string, options: ConnectOptions = {}): RedisClient {
  const topology = parseRedisStoreUrl(url)
  const extra = options.redis ?? {}
  switch (topology.kind) {
    case 'single':
      return connectRedis(url, extra)
    case 'sentinel':
      return new Redis({
        ...REDIS_CLIENT_DEFAULTS,
        sentinels: topology.sentinels,
        name: topology.name,
        db: topology.db,
        ...(topology.username !== undefined ? { username: topology.username } : {}),
        ...(topology.password !== undefined ? { password: topology.password } : {}),
        // No failoverDetector: measured, it did not shorten recovery (the retry below asks
        // the sentinels every <= 500 ms anyway), and its sentinel connections outlive quit().
        // Keep asking the sentinels (which may all be restarting) but never faster than
        // every 100 ms nor slower than every second: the retry interval adds to recovery.
        sentinelRetryStrategy: (times: number) => Math.min(100 * times, 1000),
        retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 4), 500),
        ...extra,
      })
    case 'cluster':
      return new Cluster(topology.nodes, {
        // No offline queue here either: while a slot has no primary, commands fail fast
        // (503) instead of waiting for the cluster to heal.
        enableOfflineQueue: false,
        enableReadyCheck: true,
        // As REDIS_CLIENT_DEFAULTS: one pipeline per primary and tick.
        enableAutoPipelining: true,
        maxRedirections: 16,
        retryDelayOnFailover: 100,
        retryDelayOnClusterDown: 100,
        retryDelayOnTryAgain: 100,
        slotsRefreshTimeout: 2000,
        clusterRetryStrategy: (times: number) => Math.min(100 * times, 2000),
        redisOptions: {
          ...REDIS_CLIENT_DEFAULTS,
          ...(topology.username !== undefined ? { username: topology.username } : {}),
          ...(topology.password !== undefined ? { password: topology.password } : {}),
          ...extra,
        },
      })
  }
}

