/**
 * Cluster mode: real `wsds serve` processes sharing one real redis-server. Sockets land on
 * one node and REST calls on others, as behind a load balancer without sticky sessions.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { eventually, protocolSuite } from './contracts/protocol-suite.ts'
import { startNodeProcess, writeKeySetFiles, type NodeProcess } from './helpers/node-process.ts'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { FORBIDDEN_ORIGIN, TEST_ORIGIN, olderKeySet, testKeySet } from './helpers/server.ts'
import { requireBinary } from './helpers/services.ts'
import { openSocket, verifiedHandshake, type HandshakeResult } from './helpers/ws-client.ts'
import { chromiumBinary, launchBrowser } from './helpers/browser.ts'
import { freePort } from './helpers/services.ts'

const redisBin = requireBinary('redis-server')
const keysFile = writeKeySetFiles([testKeySet, olderKeySet])
const baseEnv = (redis: RedisServer, extra: Record<string, string> = {}) => ({
  WSDS_STORE: redis.url,
  WSDS_KEYS_FILE: keysFile,
  WSDS_ALLOWED_ORIGINS: TEST_ORIGIN,
  WSDS_RATE_LIMIT: 'off',
  ...extra,
})
const countKeys = async (redis: RedisServer) => {
  const client = new Redis(redis.port, '127.0.0.1')
  try {
    return (await client.keys('wsds:c:*')).length
  } finally {
    client.disconnect()
  }
}
const status = async (node: NodeProcess, connectionId: string) =>
  (await fetch(`${node.url}/api/greeting`, { headers: { connectionId } })).status

describe('cluster on Redis', { skip: redisBin.skip }, () => {
  let redis: RedisServer
  before(async () => (redis = await startRedisServer(redisBin.path!)))
  after(() => redis?.stop())

  describe('conformance across nodes', () => {
    protocolSuite('socket on node A, REST on node B, shared Redis', async ({ challengeTimeoutMs }) => {
      const env = baseEnv(redis, { WSDS_CHALLENGE_TIMEOUT_MS: String(challengeTimeoutMs) })
      const [a, b] = await Promise.all([startNodeProcess(env), startNodeProcess(env)])
      return {
        wsUrl: a.wsUrl,
        httpUrl: b.url,
        origin: TEST_ORIGIN,
        forbiddenOrigin: FORBIDDEN_ORIGIN,
        keySet: testKeySet,
        olderKeySet,
        protectedPath: '/api/greeting?who=Test',
        challengeTimeoutMs,
        exactCloseCodes: true,
        closesOnBadFrameFlood: true,
        countRecords: () => countKeys(redis),
        close: async () => {
          await Promise.all([a.stop(), b.stop()])
        },
      }
    })
  })

  describe('three nodes', () => {
    let nodes: NodeProcess[]
    before(async () => {
      nodes = await Promise.all([0, 1, 2].map(() => startNodeProcess(baseEnv(redis, { WSDS_LEASE_MS: '1500' }))))
    })
    after(() => Promise.all(nodes.map((n) => n.stop())))

    it('revokes on every node within 100 ms of the socket closing on another', async () => {
      const [n1, n2, n3] = nodes as [NodeProcess, NodeProcess, NodeProcess]
      const { client, connectionId } = await verifiedHandshake(n1.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      // Warm both caches: revocation must beat a cached positive, not only a store read.
      assert.equal(await status(n2, connectionId), 200)
      assert.equal(await status(n3, connectionId), 200)
      assert.equal(await status(n2, connectionId), 200)
      await client.close()
      const ms = await Promise.all([n2, n3].map((n) => eventually(async () => (await status(n, connectionId)) === 401, 100, `401 on ${n.url}`)))
      assert.ok(Math.max(...ms) <= 100, `revoked after ${ms.join(', ')} ms`)
    })

    it('admits a real browser verified through node 1 on nodes 2 and 3, and revokes it on both within 100 ms of the tab closing', { skip: chromiumBinary.skip }, async () => {
      // Node 1 serves the demo under a hostname of its own; its origin is the allowed one.
      const port = await freePort()
      const origin = `http://app.wsds.test:${port}`
      const web = await startNodeProcess(baseEnv(redis, { PORT: String(port), WSDS_DEMO: 'on', WSDS_ALLOWED_ORIGINS: origin }))
      const [, n2, n3] = nodes as [NodeProcess, NodeProcess, NodeProcess]
      const browser = await launchBrowser()
      try {
        const page = await browser.newPage()
        await page.goto(`${origin}/`)
        await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 10_000 })
        const connectionId = (await page.locator('#connection-id').textContent())?.trim() ?? ''
        assert.equal(await status(n2, connectionId), 200)
        assert.equal(await status(n3, connectionId), 200)
        await page.close()
        const ms = await Promise.all([n2, n3].map((n) => eventually(async () => (await status(n, connectionId)) === 401, 100, `401 on ${n.url}`)))
        assert.ok(Math.max(...ms) <= 100)
      } finally {
        await browser.close()
        await web.stop()
      }
    })

    it('stops admitting the ids of a SIGKILLed node within twice the lease, while the others keep serving', async () => {
      const victim = await startNodeProcess(baseEnv(redis, { WSDS_LEASE_MS: '1500' }))
      const [n1, n2] = nodes as [NodeProcess, NodeProcess]
      const held: HandshakeResult[] = []
      for (let i = 0; i < 100; i += 25) {
        held.push(...(await Promise.all(Array.from({ length: 25 }, () => verifiedHandshake(victim.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })))))
      }
      const sample = held.map((h) => h.connectionId)
      assert.equal(await status(n1, sample[0]!), 200)
      assert.equal(await status(n2, sample[1]!), 200)
      await victim.kill()
      const killedAt = performance.now()
      // Meanwhile a live node's own connection keeps working.
      const live = await verifiedHandshake(n1.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      await eventually(
        async () => {
          const codes = await Promise.all(sample.flatMap((id) => [status(n1, id), status(n2, id)]))
          return codes.every((c) => c === 401)
        },
        2 * 1500 + 500,
        'all ids of the dead node refused on every node',
      )
      const elapsed = performance.now() - killedAt
      assert.ok(elapsed <= 3000 + 500, `took ${elapsed} ms`)
      assert.equal(await status(n2, live.connectionId), 200)
      await eventually(async () => (await countKeys(redis)) <= 1, 3000, 'Redis expired the dead node records')
      await live.client.close()
    })

    it('leaves zero records after 5,000 connections opened and closed across nodes', async () => {
      const total = 5000
      let next = 0
      const worker = async () => {
        while (next < total) {
          const node = nodes[next++ % nodes.length]!
          const { client } = await verifiedHandshake(node.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
          await client.close()
        }
      }
      await Promise.all(Array.from({ length: 32 }, worker))
      await eventually(async () => (await countKeys(redis)) === 0, 5000, 'zero records in Redis')
    })
  })

  describe('shared upgrade rate limit', () => {
    it('counts one address across nodes: the limit holds cluster-wide, with 429 on the upgrade', async () => {
      const env = baseEnv(redis, { WSDS_RATE_LIMIT: '2', WSDS_TRUST_PROXY: 'on', WSDS_STORE_PREFIX: 'rl-cluster:' })
      const [a, b] = await Promise.all([startNodeProcess(env), startNodeProcess(env)])
      try {
        const open = (n: NodeProcess, xff: string) => openSocket(n.wsUrl, { origin: TEST_ORIGIN, headers: { 'x-forwarded-for': xff } })
        // Burst 4 for the address, split over both nodes; the fifth is refused wherever it lands.
        const held = [await open(a, '203.0.113.50'), await open(b, '203.0.113.50'), await open(a, '203.0.113.50'), await open(b, '203.0.113.50')]
        await assert.rejects(open(a, '203.0.113.50'), { status: 429 })
        await assert.rejects(open(b, '203.0.113.50'), { status: 429 })
        held.push(await open(b, '198.51.100.50'))
        await Promise.all(held.map((c) => c.close()))
      } finally {
        await Promise.all([a.stop(), b.stop()])
      }
    })
  })

  describe('Redis outage', () => {
    let nodes: NodeProcess[]
    before(async () => {
      nodes = await Promise.all([0, 1].map(() => startNodeProcess(baseEnv(redis, { WSDS_LEASE_MS: '1500' }))))
    })
    after(() => Promise.all(nodes.map((n) => n.stop())))

    it('fails closed with 503, keeps sockets open, logs once, and recovers when Redis returns', async () => {
      const [n1, n2] = nodes as [NodeProcess, NodeProcess]
      const held = await verifiedHandshake(n1.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      assert.equal(await status(n2, held.connectionId), 200)
      let socketClosed = false
      void held.client.closed.then(() => (socketClosed = true))

      await redis.stop()
      // REST fails closed with 503 store-unavailable on both nodes (cached or not).
      await eventually(async () => (await status(n2, held.connectionId)) === 503, 3000, '503 on node 2')
      const res = await fetch(`${n1.url}/api/greeting`, { headers: { connectionId: held.connectionId } })
      assert.equal(res.status, 503)
      assert.deepEqual(await res.json(), { error: 'store-unavailable' })
      // New upgrades are refused with 503.
      await assert.rejects(openSocket(n1.wsUrl, { origin: TEST_ORIGIN }), { status: 503 })
      for (let i = 0; i < 20; i++) await status(n2, held.connectionId)
      assert.equal(socketClosed, false)
      for (const n of nodes) {
        assert.equal(n.child.exitCode, null, 'node still running')
        const downs = n.output().split('\n').filter((l) => l.includes('"event":"store-down"'))
        assert.equal(downs.length, 1, `one store-down line, got ${downs.length}`)
      }

      await redis.start()
      // The restarted Redis is empty: the owner writes its live records back by itself.
      await eventually(async () => (await status(n2, held.connectionId)) === 200, 5000, 'held id admitted again')
      const fresh = await verifiedHandshake(n2.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      assert.equal(await status(n1, fresh.connectionId), 200)
      for (const n of nodes) assert.match(n.output(), /"event":"store-up"/)
      assert.equal(socketClosed, false)
      await fresh.client.close()
      await held.client.close()
    })
  })
})
