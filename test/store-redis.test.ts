import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { createAuthenticator } from '../src/core/authenticator.ts'
import { isWsdsError } from '../src/core/errors.ts'
import type { ConnectionRecord } from '../src/core/store.ts'
import { createRedisRateLimiter } from '../src/stores/redis-rate-limit.ts'
import { REDIS_CLIENT_DEFAULTS, connectRedis, createRedisStore, type RedisStore } from '../src/stores/redis.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { freshId, storeContract } from './contracts/store-contract.ts'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { requireBinary } from './helpers/services.ts'

const redisBin = requireBinary('redis-server')

const rec = (id: string, over: Partial<ConnectionRecord> = {}): ConnectionRecord => ({
  connectionId: id,
  status: 'verified',
  origin: 'https://app.example.com',
  createdAt: Date.now(),
  verifiedAt: Date.now(),
  expiresAt: 0,
  ...over,
})

describe('Redis store', { skip: redisBin.skip }, () => {
  let redis: RedisServer
  const open: RedisStore[] = []
  const openStore = async (prefix = 'test:') => {
    const store = createRedisStore({ client: connectRedis(redis.url), prefix, closeClient: true })
    assert.equal(await store.ready(5000), true)
    open.push(store)
    return store
  }
  before(async () => (redis = await startRedisServer(redisBin.path!)))
  after(async () => {
    await Promise.all(open.map((s) => s.close()))
    await redis?.stop()
  })

  storeContract('redis', async () => {
    const store = await openStore()
    const peer = await openStore()
    return {
      store,
      peer,
      cleanup: async () => {
        await Promise.all([store.close(), peer.close()])
      },
    }
  }, { pushesDeletions: true })

  it('keeps deployments apart by prefix', async () => {
    const a = await openStore('one:')
    const b = await openStore('two:')
    const id = freshId()
    await a.put(rec(id), { ttlMs: 10_000 })
    assert.notEqual(await a.get(id), null)
    assert.equal(await b.get(id), null)
    const heard: string[] = []
    b.onDelete((x) => heard.push(x))
    await a.delete(id)
    await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(heard, [])
  })

  it('renews many leases with one script call per batch and reports lapsed ids', async () => {
    const store = createRedisStore({ client: connectRedis(redis.url), prefix: 'batch:', renewBatch: 100, closeClient: true })
    open.push(store)
    await store.ready(5000)
    const ids = Array.from({ length: 250 }, () => freshId())
    await Promise.all(ids.map((id) => store.put(rec(id), { ttlMs: 60_000 })))
    const base = new Redis(redis.port, '127.0.0.1')
    const commands: string[] = []
    // MONITOR runs on a connection of its own, which must be closed too.
    const monitor = await base.monitor()
    monitor.on('monitor', (_t: string, args: string[]) => commands.push(String(args[0]).toLowerCase()))
    await new Promise((r) => setTimeout(r, 50))
    const missing = await store.renew([...ids, 'gone-1', 'gone-2'], { ttlMs: 60_000 })
    await new Promise((r) => setTimeout(r, 50))
    monitor.disconnect()
    base.disconnect()
    assert.deepEqual(missing, ['gone-1', 'gone-2'])
    // 252 ids in batches of 100: three script calls (evalsha), not one command per id.
    assert.equal(commands.filter((c) => c === 'evalsha' || c === 'eval').length, 3)
    assert.ok(commands.filter((c) => c === 'pexpire').length <= 252)
    assert.equal(await store.count(), 250)
  })

  it('lets Redis expire a record whose lease is not renewed', async () => {
    const store = await openStore('lease:')
    const id = freshId()
    await store.put(rec(id), { ttlMs: 150 })
    assert.notEqual(await store.get(id), null)
    await eventually(async () => (await store.get(id)) === null, 1000, 'record expired')
  })

  it('fails fast while Redis is down, resets caches, reports status once, and recovers', async () => {
    const store = await openStore('outage:')
    const auth = createAuthenticator({ store, cacheTtlMs: 60_000 })
    const id = freshId()
    await store.put(rec(id), { ttlMs: 60_000 })
    assert.equal((await auth.check({ connectionId: id })).admit, true)
    assert.equal(auth.cacheSize, 1)
    const statuses: string[] = []
    let resets = 0
    store.onStatus((s) => statuses.push(s))
    store.onReset(() => resets++)

    await redis.stop()
    await eventually(() => store.status === 'down', 3000, 'status down')
    assert.equal(auth.cacheSize, 0, 'cache emptied when the deletion feed dropped')
    const started = performance.now()
    await assert.rejects(auth.check({ connectionId: id }), (err) => isWsdsError(err, 'ERR_STORE_UNAVAILABLE'))
    await assert.rejects(store.put(rec(freshId()), { ttlMs: 1000 }))
    assert.ok(performance.now() - started < 1500, 'no offline queue: commands fail at once')

    await redis.start()
    assert.equal(await store.ready(10_000), true)
    assert.deepEqual(statuses, ['down', 'up'])
    assert.ok(resets >= 2, 'reset on the way down and on the way back')
    // The restarted server is empty (no persistence): the id is unknown now.
    assert.equal((await auth.check({ connectionId: id })).admit, false)
    auth.close()
  })

  it('shares the upgrade rate limit across nodes', async () => {
    const a = connectRedis(redis.url)
    const b = connectRedis(redis.url)
    await Promise.all([a, b].map((c) => new Promise((r) => c.once('ready', r))))
    const la = createRedisRateLimiter({ client: a, perSecond: 5, burst: 10, prefix: 'rl-test:' })
    const lb = createRedisRateLimiter({ client: b, perSecond: 5, burst: 10, prefix: 'rl-test:' })
    const results: boolean[] = []
    for (let i = 0; i < 12; i++) results.push(await (i % 2 ? la : lb).take('203.0.113.9'))
    assert.equal(results.filter(Boolean).length, 10)
    assert.equal(await la.take('198.51.100.1'), true, 'other addresses have their own bucket')
    a.disconnect()
    b.disconnect()
  })

  it('uses fail-fast client defaults', () => {
    assert.equal(REDIS_CLIENT_DEFAULTS.enableOfflineQueue, false)
    assert.ok((REDIS_CLIENT_DEFAULTS.commandTimeout ?? 0) > 0)
  })
})
