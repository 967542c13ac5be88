/**
 * Turns WSDS_STORE into a store (and, for Redis, the shared upgrade limiter). Adapters are
 * imported on demand so a memory-store process never loads ioredis or the AWS SDK: both are
 * optional peer dependencies of the package (docs/packaging.md), and a missing one is named.
 */
import { WsdsError } from '../core/errors.ts'
import type { Store } from '../core/store.ts'
import { createRateLimiter, type RateLimiter } from '../gateway/rate-limit.ts'
import type { ServerConfig } from '../server/config.ts'
import { createMemoryStore } from './memory.ts'

export interface OpenedStore {
  store: Store
  /** Upgrade limiter: shared through Redis when the store is Redis, else per process. */
  rateLimiter: RateLimiter | null
  kind: 'memory' | 'redis' | 'dynamodb'
}

/**
 * Imports a store adapter; when the client library it needs (an optional peer) is not
 * installed, says which package to install instead of Node's bare ERR_MODULE_NOT_FOUND.
 */
export async function importAdapter<T>(load: () => Promise<T>, pkg: string, what: string): Promise<T> {
  try {
    return await load()
  } catch (cause) {
    const err = cause as NodeJS.ErrnoException
    if (err.code === 'ERR_MODULE_NOT_FOUND' && typeof err.message === 'string' && err.message.includes(`'${pkg}'`)) {
      throw new WsdsError('ERR_CONFIG', `install ${pkg} to use ${what} (npm install ${pkg})`, { cause })
    }
    throw cause
  }
}

/** How long a starting node waits for Redis before it starts anyway, failing closed. */
const REDIS_START_WAIT_MS = 5000

export async function openStore(
  config: Pick<ServerConfig, 'store' | 'storePrefix' | 'rateLimit'>,
  onSlowStart?: (message: string) => void,
): Promise<OpenedStore> {
  const local = () => (config.rateLimit === null ? null : createRateLimiter({ perSecond: config.rateLimit }))
  if (/^(rediss?|redis-sentinel|redis-cluster):\/\//.test(config.store)) {
    // redis-connect.ts turns every Redis URL form (plain, Sentinel, Cluster) into a client.
    const { connectRedisStore, describeRedisUrl } = await importAdapter(() => import('./redis-connect.ts'), 'ioredis', 'a Redis store')
    const { createRedisStore } = await import('./redis.ts')
    const { createRedisRateLimiter } = await import('./redis-rate-limit.ts')
    const client = connectRedisStore(config.store)
    const store = createRedisStore({ client, prefix: config.storePrefix, closeClient: true })
    if (!(await store.ready(REDIS_START_WAIT_MS))) {
      onSlowStart?.(`Redis (${describeRedisUrl(config.store)}) is not reachable yet: refusing upgrades (503) until it is`)
    }
    const rateLimiter =
      config.rateLimit === null ? null : createRedisRateLimiter({ client, perSecond: config.rateLimit, prefix: config.storePrefix })
    return { store, rateLimiter, kind: 'redis' }
  }
  if (config.store.startsWith('dynamodb://')) {
    const { connectDynamoDb, createDynamoDbStore } = await importAdapter(
      () => import('./dynamodb.ts'),
      '@aws-sdk/client-dynamodb',
      'a DynamoDB store',
    )
    const { client, tableName } = connectDynamoDb(config.store)
    const store = createDynamoDbStore({ client, tableName })
    const close = store.close
    store.close = async () => {
      await close()
      client.destroy()
    }
    return { store, rateLimiter: local(), kind: 'dynamodb' }
  }
  return { store: createMemoryStore(), rateLimiter: local(), kind: 'memory' }
}
