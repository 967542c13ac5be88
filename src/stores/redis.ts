/**
 * Redis store for clusters of gateway nodes (one Redis shared by all).
 *
 * - A record is one string key, `SET ... PX lease`: Redis itself expires the records of a
 *   node that died, and the owner renews its leases with one script call per batch.
 * - Reads are one GET. A record read is trusted until `now + lease`: a record that was
 *   about to lapse when read stays admitted at most one more lease, which is PROTOCOL.md's
 *   bound (never later than twice the lease after the owner died).
 * - Deletion is DEL plus PUBLISH in one script, and every node subscribes to the channel.
 *   Explicit pub/sub rather than keyspace notifications: those need `notify-keyspace-events`
 *   set on the server (managed Redis often forbids it), would also fire for our own renewals,
 *   and are no more reliable (both are fire-and-forget). A lapsed lease publishes nothing,
 *   which is fine: cached entries carry the lease bound themselves.
 * - When the subscription drops, deletions may be missed: the store emits `reset` (every
 *   authenticator empties its cache) when it drops and again when it is back.
 */
import { Redis, type RedisOptions } from 'ioredis'
import { WsdsError } from '../core/errors.ts'
import { Listeners, type ConnectionRecord, type Store, type StoreStatus } from '../core/store.ts'

export interface RedisStoreOptions {
  /** Command connection. Take it from the caller so it can be shared and configured. */
  client: Redis
  /** Subscriber connection (default: `client.duplicate()`, closed with the store). */
  subscriber?: Redis
  /** Key and channel prefix, so deployments can share a Redis (default 'wsds:'). */
  prefix?: string
  /** Also quit `client` on close (default false: the caller owns it). */
  closeClient?: boolean
  /** Ids per renewal script call (default 500). */
  renewBatch?: number
  now?: () => number
}

export interface RedisStore extends Store {
  /** The command connection, for callers that need Redis directly (rate limits, tests). */
  readonly raw: Redis
  readonly status: StoreStatus
  /** Resolves when both connections are up, or false after `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean>
  /** Number of records under the prefix (SCAN; for tests and operations, not hot paths). */
  count(): Promise<number>
}

interface StoredRecord {
  i: string
  s: 'pending' | 'verified'
  o: string
  c: number
  v?: number
  n?: string
  /** K_req of a bound connection (ConnectionRecord.bindKey). */
  k?: string
  /** Lease length, ms: how long a read may be trusted. */
  l: number
}

const DELETE_SCRIPT = `
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n`

// Returns the 1-based positions of keys that no longer exist, so the owner can rewrite them.
const RENEW_SCRIPT = `
local missing = {}
for i = 1, #KEYS do
  if redis.call('PEXPIRE', KEYS[i], ARGV[1]) == 0 then missing[#missing + 1] = i end
end
return missing`

type ScriptedRedis = Redis & {
  wsdsDelete(key: string, channel: string, id: string): Promise<number>
  wsdsRenew(...args: (string | number)[]): Promise<number[]>
}

/**
 * ioredis settings for fail-fast behaviour: no offline queue (a command while Redis is down
 * fails at once instead of waiting), a command timeout for a hung server, and reconnects
 * that back off to 2 s and never give up.
 */
export const REDIS_CLIENT_DEFAULTS: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 1000,
  connectTimeout: 2000,
  retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
  lazyConnect: false,
}

/** Opens the connection a `redis://` / `rediss://` URL names, with the defaults above. */
export function connectRedis(url: string, options: RedisOptions = {}): Redis {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch (cause) {
    throw new WsdsError('ERR_CONFIG', `WSDS_STORE="${url}" is not a URL`, { cause })
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new WsdsError('ERR_CONFIG', `WSDS_STORE="${url}" must start with redis:// or rediss://`)
  }
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0
  if (!Number.isInteger(db) || db < 0) throw new WsdsError('ERR_CONFIG', `WSDS_STORE="${url}": bad database number`)
  return new Redis(url, { ...REDIS_CLIENT_DEFAULTS, ...options })
}

const encode = (r: ConnectionRecord, leaseMs: number): string => {
  const s: StoredRecord = { i: r.connectionId, s: r.status, o: r.origin, c: r.createdAt, l: leaseMs }
  if (r.verifiedAt !== undefined) s.v = r.verifiedAt
  if (r.nodeId !== undefined) s.n = r.nodeId
  if (r.bindKey !== undefined) s.k = r.bindKey
  return JSON.stringify(s)
}

function decode(text: string, now: number): ConnectionRecord | null {
  let s: StoredRecord
  try {
    s = JSON.parse(text) as StoredRecord
  } catch {
    return null
  }
  if (typeof s.i !== 'string' || (s.s !== 'pending' && s.s !== 'verified')) return null
  const record: ConnectionRecord = { connectionId: s.i, status: s.s, origin: s.o, createdAt: s.c, expiresAt: now + s.l }
  if (s.v !== undefined) record.verifiedAt = s.v
  if (s.n !== undefined) record.nodeId = s.n
  if (typeof s.k === 'string') record.bindKey = s.k
  return record
}

export function createRedisStore(options: RedisStoreOptions): RedisStore {
  const client = options.client as ScriptedRedis
  const ownSubscriber = options.subscriber === undefined
  const subscriber = options.subscriber ?? client.duplicate()
  const prefix = options.prefix ?? 'wsds:'
  const renewBatch = options.renewBatch ?? 500
  const now = options.now ?? Date.now
  const channel = `${prefix}revoked`
  // Operator messages (re-challenges) for every node; on the subscriber connection we already hold.
  const opsChannel = `${prefix}ops`
  const broadcasts = new Listeners<[string]>()
  const key = (id: string) => `${prefix}c:${id}`
  const deletes = new Listeners<[string]>()
  const resets = new Listeners<[]>()
  const statuses = new Listeners<[StoreStatus, unknown?]>()

  if (typeof client.wsdsDelete !== 'function') {
    client.defineCommand('wsdsDelete', { numberOfKeys: 1, lua: DELETE_SCRIPT })
    client.defineCommand('wsdsRenew', { lua: RENEW_SCRIPT })
  }

  // Reachability is the conjunction of both connections: without the subscription,
  // revocations from other nodes would go unheard.
  let status: StoreStatus = client.status === 'ready' && subscriber.status === 'ready' ? 'up' : 'down'
  let lastError: unknown
  let subscribed = false
  let closed = false
  const update = () => {
    if (closed) return
    const next: StoreStatus = client.status === 'ready' && subscriber.status === 'ready' && subscribed ? 'up' : 'down'
    if (next === status) return
    status = next
    // Whatever was cached may have missed a deletion while we were deaf; and on the way
    // back, entries cached during the gap are suspect too.
    resets.emit()
    statuses.emit(next, next === 'down' ? lastError : undefined)
  }
  const onError = (err: unknown) => {
    lastError = err
  }
  for (const conn of [client, subscriber]) {
    conn.on('error', onError)
    conn.on('ready', update)
    conn.on('close', update)
    conn.on('end', update)
  }
  subscriber.on('message', (ch: string, id: string) => {
    if (ch === channel) deletes.emit(id)
    else if (ch === opsChannel) broadcasts.emit(id)
  })
  // Subscribe once the connection is first ready (with no offline queue, an earlier call
  // would fail); after that ioredis resubscribes by itself on every reconnect.
  const subscribe = () => {
    if (subscribed) return update()
    subscriber.subscribe(channel, opsChannel).then(
      () => {
        subscribed = true
        update()
      },
      (err: unknown) => onError(err),
    )
  }
  subscriber.on('ready', subscribe)
  if (subscriber.status === 'ready') subscribe()

  return {
    raw: client,
    get status() {
      return status
    },
    ready(timeoutMs) {
      if (status === 'up') return Promise.resolve(true)
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          off()
          resolve(false)
        }, timeoutMs)
        const off = statuses.add((next) => {
          if (next !== 'up') return
          clearTimeout(timer)
          off()
          resolve(true)
        })
      })
    },
    async put(record, { ttlMs }) {
      await client.set(key(record.connectionId), encode(record, ttlMs), 'PX', Math.max(1, Math.ceil(ttlMs)))
    },
    async get(id) {
      const text = await client.get(key(id))
      return text === null ? null : decode(text, now())
    },
    async delete(id) {
      // Locally first, so this node stops admitting the id even if Redis cannot be told;
      // and again after, for a read that raced the DEL and re-cached the record.
      deletes.emit(id)
      await client.wsdsDelete(key(id), channel, id)
      deletes.emit(id)
    },
    async renew(ids, { ttlMs }) {
      const missing: string[] = []
      for (let i = 0; i < ids.length; i += renewBatch) {
        const batch = ids.slice(i, i + renewBatch)
        const positions = await client.wsdsRenew(batch.length, ...batch.map(key), Math.max(1, Math.ceil(ttlMs)))
        for (const p of positions) missing.push(batch[p - 1]!)
      }
      return missing
    },
    onDelete: (listener) => deletes.add(listener),
    onReset: (listener) => resets.add(listener),
    onStatus: (listener) => statuses.add(listener),
    async broadcast(message) {
      await client.publish(opsChannel, message)
    },
    onBroadcast: (listener) => broadcasts.add(listener),
    async count() {
      let n = 0
      let cursor = '0'
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}c:*`, 'COUNT', 1000)
        cursor = next
        n += keys.length
      } while (cursor !== '0')
      return n
    },
    async close() {
      closed = true
      const quit = (conn: Redis) => conn.quit().catch(() => conn.disconnect())
      if (ownSubscriber) await quit(subscriber)
      else await subscriber.unsubscribe(channel, opsChannel).catch(() => {})
      if (options.closeClient === true) await quit(client)
    },
  }
}
