/**
 * WSDS_STORE_OUTAGE on a real redis-server that is stopped and restarted: `cached` keeps
 * admitting ids cached before the outage for at most the cache TTL; `closed` does not.
 * Plus the Redis URL grammar and the configuration names.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createAuthenticator, type StoreOutagePolicy } from '../src/core/authenticator.ts'
import { isWsdsError } from '../src/core/errors.ts'
import type { ConnectionRecord } from '../src/core/store.ts'
import { loadConfig } from '../src/server/config.ts'
import { connectRedis, createRedisStore, type RedisStore } from '../src/stores/redis.ts'
import { parseRedisStoreUrl, redact } from '../src/stores/redis-url.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { freshId } from './contracts/store-contract.ts'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { TEST_ORIGIN, startTestServer, testKeySet } from './helpers/server.ts'
import { requireBinary } from './helpers/services.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

const redisBin = requireBinary('redis-server')

const rec = (id: string): ConnectionRecord => ({
  connectionId: id,
  status: 'verified',
  origin: TEST_ORIGIN,
  createdAt: Date.now(),
  verifiedAt: Date.now(),
  expiresAt: 0,
})

describe('store outage policy on a real Redis', { skip: redisBin.skip }, () => {
  let redis: RedisServer
  before(async () => (redis = await startRedisServer(redisBin.path!)))
  after(() => redis?.stop())

  const scenario = async (policy: StoreOutagePolicy) => {
    const store: RedisStore = createRedisStore({ client: connectRedis(redis.url), prefix: `outage-${policy}:`, closeClient: true })
    assert.equal(await store.ready(5000), true)
    const clock = { t: Date.now() }
    const admittedDuringOutage: string[] = []
    const auth = createAuthenticator({
      store,
      cacheTtlMs: 10_000,
      storeOutage: policy,
      now: () => clock.t,
      onOutageAdmission: (id) => admittedDuringOutage.push(id),
    })
    const known = freshId()
    const unknown = freshId()
    await store.put(rec(known), { ttlMs: 60_000 })
    assert.equal((await auth.check({ connectionId: known })).admit, true)
    return { store, auth, clock, known, unknown, admittedDuringOutage }
  }

  it('with cached, keeps admitting an id admitted before the outage for at most the cache TTL, and nothing else', async () => {
    const { store, auth, clock, known, unknown, admittedDuringOutage } = await scenario('cached')
    try {
      await redis.stop()
      await eventually(() => store.status === 'down', 3000, 'store down')
      clock.t += 5_000
      assert.equal((await auth.check({ connectionId: known })).admit, true, 'known id admitted from the cache')
      assert.equal((await auth.check({ connectionId: known })).admit, true)
      assert.deepEqual(admittedDuringOutage, [known, known])
      assert.equal(auth.stats.outageAdmissions, 2)
      await assert.rejects(auth.check({ connectionId: unknown }), (e) => isWsdsError(e, 'ERR_STORE_UNAVAILABLE'), 'an id never admitted is not')
      clock.t += 5_001 // now past the TTL counted from the admission
      await assert.rejects(auth.check({ connectionId: known }), (e) => isWsdsError(e, 'ERR_STORE_UNAVAILABLE'), 'not past the TTL')
      assert.equal(auth.stats.outageAdmissions, 2)
    } finally {
      await redis.start()
      await store.ready(10_000)
      auth.close()
      await store.close()
    }
  })

  it('with cached, forgets the outage set once the store is back (revocations during the outage were not heard)', async () => {
    const { store, auth, known } = await scenario('cached')
    try {
      await redis.stop()
      await eventually(() => store.status === 'down', 3000, 'store down')
      assert.equal((await auth.check({ connectionId: known })).admit, true)
      await redis.start()
      assert.equal(await store.ready(10_000), true)
      // The restarted Redis is empty: the store's answer wins, not the outage cache.
      assert.equal((await auth.check({ connectionId: known })).admit, false)
    } finally {
      auth.close()
      await store.close()
    }
  })

  it('with cached, does not admit an id this node revoked during the outage (its own socket closed)', async () => {
    const { store, auth, known } = await scenario('cached')
    try {
      await redis.stop()
      await eventually(() => store.status === 'down', 3000, 'store down')
      // The owner's delete fails against the dead Redis, but tells local listeners first.
      await assert.rejects(store.delete(known))
      assert.equal(store.queuedDeletes, 1, 'the delete waits for the store')
      await assert.rejects(auth.check({ connectionId: known }), (e) => isWsdsError(e, 'ERR_STORE_UNAVAILABLE'))
      await redis.start()
      assert.equal(await store.ready(10_000), true)
      await eventually(() => store.queuedDeletes === 0, 3000, 'queued delete sent once the store is back')
    } finally {
      auth.close()
      await store.close()
    }
  })

  it('with closed (the default), answers ERR_STORE_UNAVAILABLE for a known id during the outage', async () => {
    const { store, auth, known, admittedDuringOutage } = await scenario('closed')
    try {
      await redis.stop()
      await eventually(() => store.status === 'down', 3000, 'store down')
      await assert.rejects(auth.check({ connectionId: known }), (e) => isWsdsError(e, 'ERR_STORE_UNAVAILABLE'))
      assert.deepEqual(admittedDuringOutage, [])
      assert.equal(auth.stats.outageAdmissions, 0)
    } finally {
      await redis.start()
      await store.ready(10_000)
      auth.close()
      await store.close()
    }
  })

  it('serves 200 from the cache through a gateway with WSDS_STORE_OUTAGE=cached, 503 with closed, and counts it in /metrics', async () => {
    const cached = await startTestServer({ store: redis.url, storePrefix: 'gw-outage:', storeOutage: 'cached', authCacheTtlMs: 60_000 })
    const closed = await startTestServer({ store: redis.url, storePrefix: 'gw-outage:', storeOutage: 'closed', authCacheTtlMs: 60_000 })
    const get = (url: string, connectionId: string) => fetch(`${url}/api/greeting`, { headers: { connectionId } })
    try {
      const { client, connectionId } = await verifiedHandshake(cached.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      assert.equal((await get(cached.url, connectionId)).status, 200)
      assert.equal((await get(closed.url, connectionId)).status, 200)
      await redis.stop()
      await eventually(async () => (await get(closed.url, connectionId)).status === 503, 3000, '503 with closed')
      assert.equal((await get(cached.url, connectionId)).status, 200, 'cached keeps the known id admitted')
      const metrics = await (await fetch(`${cached.url}/metrics`)).text()
      assert.match(metrics, /^wsds_store_outage_admissions_total(\{[^}]*\})? [1-9]/m)
      await client.close().catch(() => {})
    } finally {
      // Closed while Redis is still down, then Redis comes back: a gateway that quits while its
      // clients are reconnecting races ioredis's own resubscribe, which it does not catch.
      await Promise.all([cached.close(), closed.close()])
      await redis.start()
    }
  })
})

describe('Redis store URLs and outage configuration', () => {
  it('parses Sentinel and Cluster URLs with hosts, master name, database and credentials', () => {
    assert.deepEqual(parseRedisStoreUrl('redis-sentinel://10.0.0.1:26379,sentinel-2.internal:26380/mymaster'), {
      kind: 'sentinel',
      sentinels: [
        { host: '10.0.0.1', port: 26379 },
        { host: 'sentinel-2.internal', port: 26380 },
      ],
      name: 'mymaster',
      db: 0,
    })
    assert.deepEqual(parseRedisStoreUrl('redis-sentinel://:s%40cret@[::1]:26379/m-1?db=3'), {
      kind: 'sentinel',
      sentinels: [{ host: '::1', port: 26379 }],
      name: 'm-1',
      db: 3,
      password: 's@cret',
    })
    assert.deepEqual(parseRedisStoreUrl('redis-cluster://app:pw@n1:7000,n2:7001'), {
      kind: 'cluster',
      nodes: [
        { host: 'n1', port: 7000 },
        { host: 'n2', port: 7001 },
      ],
      username: 'app',
      password: 'pw',
    })
    assert.deepEqual(parseRedisStoreUrl('redis://h:6379/2'), { kind: 'single', url: 'redis://h:6379/2' })
  })

  it('refuses malformed Redis URLs with ERR_CONFIG and never echoes the password', () => {
    const bad = [
      'redis-sentinel://h1:26379',
      'redis-sentinel://h1:26379/',
      'redis-sentinel://h1/mymaster',
      'redis-sentinel://h1:0/mymaster',
      'redis-sentinel://h1:26379/mymaster?db=x',
      'redis-sentinel://h1:26379/mymaster?timeout=1',
      'redis-cluster://h1:7000/0',
      'redis-cluster://h1:7000,,h2:7001',
      'redis-cluster://user:topsecret@h1:99999',
      `redis-cluster://${Array.from({ length: 40 }, (_, i) => `h${i}:7000`).join(',')}`,
    ]
    for (const url of bad) {
      assert.throws(() => parseRedisStoreUrl(url), (e) => isWsdsError(e, 'ERR_CONFIG') && !e.message.includes('topsecret'), url)
    }
    assert.equal(redact('redis-cluster://user:topsecret@h1:7000'), 'redis-cluster://user:***@h1:7000')
  })

  it('accepts the new store URLs and WSDS_STORE_OUTAGE in configuration, and names the variable on bad values', () => {
    const base = { WSDS_ALLOWED_ORIGINS: TEST_ORIGIN }
    assert.equal(loadConfig({ ...base, WSDS_STORE: 'redis-cluster://a:7000,b:7001' }).store, 'redis-cluster://a:7000,b:7001')
    assert.equal(loadConfig({ ...base, WSDS_STORE: 'redis-sentinel://a:26379/m' }).storeOutage, 'closed')
    assert.equal(loadConfig({ ...base, WSDS_STORE_OUTAGE: 'cached' }).storeOutage, 'cached')
    assert.throws(() => loadConfig({ ...base, WSDS_STORE_OUTAGE: 'open' }), /WSDS_STORE_OUTAGE/)
    assert.throws(() => loadConfig({ ...base, WSDS_STORE: 'redis-sentinel://a:26379' }), /WSDS_STORE.*master name/)
    assert.throws(() => loadConfig({ ...base, WSDS_STORE: 'redis-cluster://u:hunter2@a' }), (e) => /WSDS_STORE/.test(String(e)) && !String(e).includes('hunter2'))
  })
})
