/**
 * The Redis store on a real 3-primary Redis Cluster (redis-server processes on loopback):
 * the shared store contract, slot rules (keys spread over every primary, lease renewal in
 * per-primary batches, the rate limit across slots), and gateways sharing the cluster:
 * cross-node admission, revocation on every node, and a SIGKILLed node's lease.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { ConnectionRecord } from '../src/core/store.ts'
import { connectRedisStore } from '../src/stores/redis-connect.ts'
import { createRedisRateLimiter } from '../src/stores/redis-rate-limit.ts'
import { keySlot } from '../src/stores/redis-slot.ts'
import { createRedisStore, type RedisStore } from '../src/stores/redis.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { freshId, storeContract } from './contracts/store-contract.ts'
import { startNodeProcess, writeKeySetFiles } from './helpers/node-process.ts'
import { startRedisCluster, type RedisClusterHandle } from './helpers/redis-ha.ts'
import { TEST_ORIGIN, olderKeySet, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { requireBinary } from './helpers/services.ts'
import { verifiedHandshake, type HandshakeResult } from './helpers/ws-client.ts'

const redisBin = requireBinary('redis-server')

const rec = (id: string): ConnectionRecord => ({
  connectionId: id,
  status: 'verified',
  origin: TEST_ORIGIN,
  createdAt: Date.now(),
  verifiedAt: Date.now(),
  nodeId: 'node-a',
  expiresAt: 0,
})

describe('Redis store on Redis Cluster (3 primaries)', { skip: redisBin.skip }, () => {
  let cluster: RedisClusterHandle
  const open: RedisStore[] = []
  const openStore = async (prefix = 'test:', extra: { renewBatch?: number } = {}) => {
    const store = createRedisStore({ client: connectRedisStore(cluster.url), prefix, closeClient: true, ...extra })
    assert.equal(await store.ready(10_000), true, 'cluster store ready')
    open.push(store)
    return store
  }
  before(async () => (cluster = await startRedisCluster(redisBin.path!)))
  after(async () => {
    await Promise.all(open.map((s) => s.close()))
    await cluster?.stop()
  })

  storeContract(
    'redis-cluster',
    async () => {
      const store = await openStore()
      const peer = await openStore()
      return { store, peer, cleanup: async () => void (await Promise.all([store.close(), peer.close()])) }
    },
    { pushesDeletions: true },
  )

  it('computes the same slot as the server, hash tags included', async () => {
    const node = cluster.connect(0)
    try {
      const keys = ['wsds:c:abc', 'a', '', '{user1}.following', 'foo{}{bar}', 'foo{{bar}}zap', 'foo{bar}{zap}', 'ключ', freshId()]
      for (const key of keys) assert.equal(keySlot(key), Number(await node.call('CLUSTER', 'KEYSLOT', key)), key)
    } finally {
      node.disconnect()
    }
  })

  it('spreads records over every primary', async () => {
    const store = await openStore('spread:')
    await Promise.all(Array.from({ length: 90 }, () => store.put(rec(freshId()), { ttlMs: 60_000 })))
    const sizes = await Promise.all(
      cluster.nodes.map(async (_, i) => {
        const node = cluster.connect(i)
        try {
          return (await node.keys('spread:c:*')).length
        } finally {
          node.disconnect()
        }
      }),
    )
    assert.equal(sizes.reduce((a, b) => a + b, 0), 90)
    for (const n of sizes) assert.ok(n > 0, `every primary holds records: ${sizes.join(', ')}`)
    assert.equal(await store.count(), 90)
  })

  it('renews leases across all primaries in per-primary batches and reports lapsed ids', async () => {
    const store = await openStore('renew:', { renewBatch: 20 })
    const ids = Array.from({ length: 150 }, () => freshId())
    await Promise.all(ids.map((id) => store.put(rec(id), { ttlMs: 1_000 })))
    const gone = [freshId('gone'), freshId('gone'), freshId('gone')]
    const missing = await store.renew([...ids, ...gone], { ttlMs: 60_000 })
    assert.deepEqual(missing.sort(), [...gone].sort())
    // The renewal took: after the original 1 s lease every record is still there.
    await new Promise((r) => setTimeout(r, 1_200))
    assert.equal(await store.count(), 150)
    const node = cluster.connect(1)
    try {
      const sample = (await node.keys('renew:c:*'))[0]!
      assert.ok((await node.pttl(sample)) > 50_000, 'lease extended on this primary')
    } finally {
      node.disconnect()
    }
  })

  it('shares the upgrade rate limit across nodes, with addresses in different slots', async () => {
    const a = connectRedisStore(cluster.url)
    const b = connectRedisStore(cluster.url)
    try {
      await Promise.all([a, b].map((c) => new Promise((r) => c.once('ready', r))))
      const la = createRedisRateLimiter({ client: a, perSecond: 5, burst: 10, prefix: 'rl-cluster:' })
      const lb = createRedisRateLimiter({ client: b, perSecond: 5, burst: 10, prefix: 'rl-cluster:' })
      const addresses = ['203.0.113.9', '198.51.100.7', '192.0.2.44', '2001:db8::1']
      const slots = new Set(addresses.map((x) => keySlot(`rl-cluster:rl:${x}`)))
      assert.ok(slots.size > 1, 'the addresses land in different slots')
      for (const address of addresses) {
        const results: boolean[] = []
        for (let i = 0; i < 12; i++) results.push(await (i % 2 ? la : lb).take(address))
        assert.equal(results.filter(Boolean).length, 10, `burst of 10 for ${address}`)
      }
    } finally {
      a.disconnect()
      b.disconnect()
    }
  })

  describe('gateways sharing the cluster', () => {
    let nodes: TestServer[]
    const status = async (node: TestServer, connectionId: string) =>
      (await fetch(`${node.url}/api/greeting`, { headers: { connectionId } })).status
    before(async () => {
      nodes = await Promise.all([0, 1, 2].map(() => startTestServer({ store: cluster.url, leaseMs: 1500 })))
    })
    after(() => Promise.all(nodes.map((n) => n.close())))

    it('admits an id verified on one node on the others, whatever slot it lands in', async () => {
      const [n1, n2, n3] = nodes as [TestServer, TestServer, TestServer]
      const held: HandshakeResult[] = await Promise.all(
        Array.from({ length: 12 }, () => verifiedHandshake(n1.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })),
      )
      for (const h of held) {
        assert.equal(await status(n2, h.connectionId), 200)
        assert.equal(await status(n3, h.connectionId), 200)
      }
      assert.equal(await status(n2, 'c'.repeat(43)), 401, 'an unknown id is refused')
      await Promise.all(held.map((h) => h.client.close()))
    })

    it('revokes on every node within 100 ms of the socket closing on another', async () => {
      const [n1, n2, n3] = nodes as [TestServer, TestServer, TestServer]
      const { client, connectionId } = await verifiedHandshake(n1.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      // Warm the caches: the revocation must beat a cached positive.
      for (const n of [n2, n3, n2, n3]) assert.equal(await status(n, connectionId), 200)
      await client.close()
      const ms = await Promise.all([n2, n3].map((n) => eventually(async () => (await status(n, connectionId)) === 401, 100, `401 on ${n.url}`)))
      assert.ok(Math.max(...ms) <= 100, `revoked after ${ms.join(', ')} ms`)
    })

    it('stops admitting the ids of a SIGKILLed node within twice the lease', async () => {
      const keysFile = writeKeySetFiles([testKeySet, olderKeySet])
      const victim = await startNodeProcess({
        WSDS_STORE: cluster.url,
        WSDS_KEYS_FILE: keysFile,
        WSDS_ALLOWED_ORIGINS: TEST_ORIGIN,
        WSDS_RATE_LIMIT: 'off',
        WSDS_LEASE_MS: '1500',
      })
      const [n1, n2] = nodes as [TestServer, TestServer]
      const held = await Promise.all(Array.from({ length: 30 }, () => verifiedHandshake(victim.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })))
      const ids = held.map((h) => h.connectionId)
      assert.equal(await status(n1, ids[0]!), 200)
      assert.equal(await status(n2, ids[1]!), 200)
      await victim.kill()
      const killedAt = performance.now()
      await eventually(
        async () => (await Promise.all(ids.flatMap((id) => [status(n1, id), status(n2, id)]))).every((c) => c === 401),
        2 * 1500 + 1000,
        'every id of the dead node refused on every node',
      )
      assert.ok(performance.now() - killedAt <= 2 * 1500 + 1000)
    })
  })
})
