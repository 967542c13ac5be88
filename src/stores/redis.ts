/**
 * Redis store for clusters of gateway nodes (one Redis shared by all).
 *
 * - A record is one string key, `SET ... PX lease`: Redis itself expires the records of a
 *   node that died, and the owner renews its leases with one script call per batch.
 * - Reads are one GET each, batched per event-loop turn into one MGET (redis-read-batch.ts).
 *   A record read is trusted until `now + lease`: a record that was
 *   about to lapse when read stays admitted at most one more lease, which is PROTOCOL.md's
 *   bound (never later than twice the lease after the owner died).
 * - Deletion is DEL plus PUBLISH in one script, and every node subscribes to the channel.
 *   Explicit pub/sub rather than keyspace notifications: those need `notify-keyspace-events`
 *   set on the server (managed Redis often forbids it), would also fire for our own renewals,
 *   and are no more reliable (both are fire-and-forget). A lapsed lease publishes nothing,
 *   which is fine: cached entries carry the lease bound themselves.
 * - When the subscription drops, deletions may be missed: the store emits `reset` (every
 *   authenticator empties its cache) when it drops and again when it is back.
 * - The same code runs on Sentinel (ioredis follows the primary) and on Redis Cluster
 *   (docs/cluster.md): every script touches one key, so slot rules hold; lease renewal,
 *   which touches many keys, is one pipeline per primary on Cluster instead of a script.
 * - A delete that fails (no primary answers) is queued and retried until the store is back,
 *   so a socket that closed during a failover is still revoked everywhere afterwards.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { WsdsError } from '../core/errors.ts'
import { Listeners, type ConnectionRecord, type Store, type StoreStatus } from '../core/store.ts'
import { createReadBatcher } from './redis-read-batch.ts'
import { keySlot } from './redis-slot.ts'

/** The client a Redis store runs on: one connection (plain or Sentinel-managed) or Cluster. */
export type RedisClient = Redis | Cluster

export interface RedisStoreOptions {
  /** Command connection. Take it from the caller so it can be shared and configured. */
  client: RedisClient
  /** Subscriber connection (default: `client.duplicate()`, closed with the store). */
  subscriber?: RedisClient
  /** Key and channel prefix, so deployments can share a Redis (default 'wsds:'). */
  prefix?: string
  /** Also quit `client` on close (default false: the caller owns it). */
  closeClient?: boolean
  /** Ids per renewal script call (default 500). */
  renewBatch?: number
  /** Bound on deletes waiting for the store to come back (default 100000; the oldest go first). */
  maxQueuedDeletes?: number
  /** Delay between retries of queued deletes, ms (default 250). */
  deleteRetryMs?: number
  /**
   * Send the reads of one event-loop turn together, as one MGET (Cluster: one pipeline per
   * primary), rather than one GET each (default true; redis-read-batch.ts).
   */
  batchReads?: boolean
  now?: () => number
}

export interface RedisStore extends Store {
  /** The command connection, for callers that need Redis directly (rate limits, tests). */
  readonly raw: RedisClient
  /** Deletes that failed and wait for the store to come back. */
  readonly queuedDeletes: number
  /** Queued deletes given up because the queue was full (their leases still bound them). */
  readonly droppedDeletes: number
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

type ScriptedRedis = RedisClient & {
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
  // A managed Redis's failover endpoint may leave open connections on the old primary,
  // now a read-only replica: reconnect (through the endpoint, to the new primary) on the
  // first READONLY rather than fail every write until something else drops the link.
  reconnectOnError: (err: Error) => (err.message.startsWith('READONLY') ? 1 : false),
  // Commands issued in the same tick (the record reads of concurrent requests with the
  // authenticator cache off, handshakes' writes) go out as one write and come back in one
  // read: one round trip per batch instead of one per request, and a fraction of the
  // syscalls on both sides (docs/benchmarks.md, "Cluster").
  enableAutoPipelining: true,
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
  const prefix = options.prefix ?? 'wsds:'
  const renewBatch = options.renewBatch ?? 500
  const maxQueuedDeletes = options.maxQueuedDeletes ?? 100_000
  const deleteRetryMs = options.deleteRetryMs ?? 250
  const now = options.now ?? Date.now
  const channel = `${prefix}revoked`
  // Operator messages (re-challenges) for every node; on the subscriber connection we already hold.
  const opsChannel = `${prefix}ops`
  const broadcasts = new Listeners<[string]>()
  const key = (id: string) => `${prefix}c:${id}`
  // Reads of one event-loop turn share a round trip (redis-read-batch.ts).
  const read = options.batchReads === false ? (k: string) => client.get(k) : createReadBatcher(client)
  const deletes = new Listeners<[string]>()
  const resets = new Listeners<[]>()
  const statuses = new Listeners<[StoreStatus, unknown?]>()

  if (typeof client.wsdsDelete !== 'function') {
    client.defineCommand('wsdsDelete', { numberOfKeys: 1, lua: DELETE_SCRIPT })
    client.defineCommand('wsdsRenew', { lua: RENEW_SCRIPT })
  }

  // Reachability is the conjunction of both connections: without the subscription,
  // revocations from other nodes would go unheard.
  let subscriber: RedisClient | undefined = options.subscriber
  const ready = () => client.status === 'ready' && subscriber?.status === 'ready' && subscribed
  let status: StoreStatus = 'down'
  let lastError: unknown
  let subscribed = false
  let closed = false
  const update = () => {
    if (closed) return
    const next: StoreStatus = ready() ? 'up' : 'down'
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
  const watch = (conn: RedisClient) => {
    conn.on('error', onError)
    conn.on('ready', update)
    conn.on('close', update)
    conn.on('end', update)
  }
  watch(client)
  // Subscribe once the connection is first ready (with no offline queue, an earlier call
  // would fail); after that ioredis resubscribes by itself on every reconnect.
  const subscribe = () => {
    const conn = subscriber
    if (conn === undefined || closed) return
    if (subscribed) return update()
    conn.subscribe(channel, opsChannel).then(
      () => {
        if (conn !== subscriber) return
        subscribed = true
        update()
      },
      (err: unknown) => onError(err),
    )
  }
  const useSubscriber = (conn: RedisClient) => {
    subscriber = conn
    subscribed = false
    watch(conn)
    conn.on('message', (ch: string, id: string) => {
      if (ch === channel) deletes.emit(id)
      else if (ch === opsChannel && conn === subscriber) broadcasts.emit(id)
    })
    conn.on('ready', () => {
      if (conn === subscriber) subscribe()
    })
    if (conn.status === 'ready') subscribe()
  }

  // Cluster: ioredis's cluster subscriber moves to another node by itself when its node goes
  // away, silently, and whatever was published meanwhile is lost. Here the subscription is a
  // plain connection to one node (classic PUBLISH reaches every node), replaced by this store
  // when it ends, so the gap shows as down/reset/up and caches are emptied.
  let replaceTimer: ReturnType<typeof setTimeout> | undefined
  const clusterSubscriber = (cluster: Cluster) => {
    replaceTimer = undefined
    if (closed) return
    const nodes = cluster.nodes('all')
    const node = nodes[Math.floor(Math.random() * nodes.length)]
    if (node === undefined) {
      replaceTimer = setTimeout(() => clusterSubscriber(cluster), 200)
      replaceTimer.unref?.()
      return
    }
    const conn = new Redis({
      ...node.options,
      lazyConnect: false,
      readOnly: false,
      enableOfflineQueue: true,
      // No reconnect to the same node: a new one is picked (it may be a promoted replica).
      retryStrategy: () => null,
    })
    conn.once('end', () => {
      if (conn !== subscriber || closed) return
      subscribed = false
      update()
      replaceTimer = setTimeout(() => clusterSubscriber(cluster), 100)
      replaceTimer.unref?.()
    })
    useSubscriber(conn)
  }
  if (subscriber !== undefined) useSubscriber(subscriber)
  else if (client instanceof Cluster) {
    if (client.status === 'ready') clusterSubscriber(client)
    else client.once('ready', () => clusterSubscriber(client))
  } else useSubscriber(client.duplicate())

  // Deletes that could not reach a primary. A Set: a socket closes once, and re-queuing the
  // same id must not grow the queue. Insertion order gives oldest-first dropping.
  const queued = new Set<string>()
  let dropped = 0
  let retryTimer: ReturnType<typeof setTimeout> | undefined
  let flushing = false
  const scheduleRetry = () => {
    if (retryTimer !== undefined || closed || queued.size === 0) return
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      void flushDeletes()
    }, deleteRetryMs)
    retryTimer.unref?.()
  }
  const queueDelete = (id: string) => {
    if (closed) return
    if (!queued.has(id) && queued.size >= maxQueuedDeletes) {
      queued.delete(queued.values().next().value as string)
      dropped++
    }
    queued.add(id)
    scheduleRetry()
  }
  const flushDeletes = async () => {
    if (flushing || closed) return
    flushing = true
    try {
      for (const id of [...queued]) {
        try {
          await client.wsdsDelete(key(id), channel, id)
        } catch {
          break // still no primary: keep the rest for the next round
        }
        queued.delete(id)
        deletes.emit(id)
      }
    } finally {
      flushing = false
      scheduleRetry()
    }
  }
  statuses.add((next) => {
    if (next === 'up') void flushDeletes()
  })

  const renewScript = async (ids: readonly string[], ttl: number, missing: string[]) => {
    for (let i = 0; i < ids.length; i += renewBatch) {
      const batch = ids.slice(i, i + renewBatch)
      const positions = await client.wsdsRenew(batch.length, ...batch.map(key), ttl)
      for (const p of positions) missing.push(batch[p - 1]!)
    }
  }
  // Cluster: a script may only touch one slot, so group the keys by the primary that serves
  // their slot and send each primary its PEXPIREs in pipelines of `renewBatch`.
  const renewCluster = async (cluster: Cluster, ids: readonly string[], ttl: number, missing: string[]) => {
    const byNode = new Map<string, string[]>()
    for (const id of ids) {
      const owner = cluster.slots[keySlot(key(id))]?.[0] ?? ''
      const list = byNode.get(owner)
      if (list === undefined) byNode.set(owner, [id])
      else list.push(id)
    }
    const runs: Promise<void>[] = []
    for (const list of byNode.values()) {
      runs.push(
        (async () => {
          for (let i = 0; i < list.length; i += renewBatch) {
            const batch = list.slice(i, i + renewBatch)
            const pipeline = cluster.pipeline()
            for (const id of batch) pipeline.pexpire(key(id), ttl)
            const results = (await pipeline.exec()) ?? []
            batch.forEach((id, j) => {
              const [err, n] = results[j] ?? [new Error('no reply'), null]
              if (err) throw err
              if (n === 0) missing.push(id)
            })
          }
        })(),
      )
    }
    // All settle before failing, so one dead primary does not hide another's missing ids.
    const outcomes = await Promise.allSettled(runs)
    const failed = outcomes.find((o) => o.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }

  return {
    raw: client,
    get status() {
      return status
    },
    get queuedDeletes() {
      return queued.size
    },
    get droppedDeletes() {
      return dropped
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
      const text = await read(key(id))
      return text === null ? null : decode(text, now())
    },
    async delete(id) {
      // Locally first, so this node stops admitting the id even if Redis cannot be told;
      // and again after, for a read that raced the DEL and re-cached the record.
      deletes.emit(id)
      try {
        await client.wsdsDelete(key(id), channel, id)
      } catch (err) {
        // Retried until a primary answers; the caller still hears of the failure.
        queueDelete(id)
        throw err
      }
      deletes.emit(id)
    },
    async renew(ids, { ttlMs }) {
      const missing: string[] = []
      const ttl = Math.max(1, Math.ceil(ttlMs))
      if (client instanceof Cluster) await renewCluster(client, ids, ttl, missing)
      else await renewScript(ids, ttl, missing)
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
      const scanOne = async (node: Redis) => {
        let n = 0
        let cursor = '0'
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}c:*`, 'COUNT', 1000)
          cursor = next
          n += keys.length
        } while (cursor !== '0')
        return n
      }
      const nodes = client instanceof Cluster ? client.nodes('master') : [client]
      return (await Promise.all(nodes.map(scanOne))).reduce((a, b) => a + b, 0)
    },
    async close() {
      closed = true
      if (retryTimer !== undefined) clearTimeout(retryTimer)
      if (replaceTimer !== undefined) clearTimeout(replaceTimer)
      const quit = (conn: RedisClient) => conn.quit().then(() => {}, () => conn.disconnect())
      if (subscriber !== undefined) {
        if (ownSubscriber) await quit(subscriber)
        else await subscriber.unsubscribe(channel, opsChannel).catch(() => {})
      }
      if (options.closeClient === true) await quit(client)
    },
  }
}
