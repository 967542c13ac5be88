/**
 * Redis Cluster failures with real processes: the revocation subscription dropping (it
 * must show as down/reset/up, never as a silent gap), and a SIGKILLed primary failing over
 * to its replica while verified sockets stay open with the auth cache off.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { connectRedisStore } from '../src/stores/redis-connect.ts'
import { createRedisStore, type RedisStore } from '../src/stores/redis.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { freshId } from './contracts/store-contract.ts'
import { startRedisCluster, type RedisClusterHandle } from './helpers/redis-ha.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { requireBinary } from './helpers/services.ts'
import { openSocket, verifiedHandshake, type HandshakeResult } from './helpers/ws-client.ts'

const redisBin = requireBinary('redis-server')

const status = async (node: TestServer, connectionId: string) =>
  (await fetch(`${node.url}/api/greeting`, { headers: { connectionId } })).status

describe('Redis Cluster with replicas: failures', { skip: redisBin.skip }, () => {
  let cluster: RedisClusterHandle
  before(async () => (cluster = await startRedisCluster(redisBin.path!, 3, { replicas: 1, nodeTimeoutMs: 1000 })))
  after(() => cluster?.stop())

  it('reports a dropped revocation subscription as down then up, resets caches, and hears deletions after it', async () => {
    const store: RedisStore = createRedisStore({ client: connectRedisStore(cluster.url), prefix: 'sub:', closeClient: true })
    const peer: RedisStore = createRedisStore({ client: connectRedisStore(cluster.url), prefix: 'sub:', closeClient: true })
    try {
      assert.equal(await store.ready(10_000), true)
      assert.equal(await peer.ready(10_000), true)
      const statuses: string[] = []
      let resets = 0
      peer.onStatus((s) => statuses.push(s))
      peer.onReset(() => resets++)
      // Cut every pub/sub connection on every node, as a node restart would.
      await Promise.all(
        cluster.nodes.map(async (_, i) => {
          const node = cluster.connect(i)
          try {
            await node.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
          } finally {
            node.disconnect()
          }
        }),
      )
      await eventually(() => statuses.includes('down') && peer.status === 'up', 5000, 'down then up again')
      assert.ok(resets >= 2, `caches reset on the way down and back (${resets})`)
      const id = freshId()
      const heard = new Promise<string>((resolve) => peer.onDelete((x) => x === id && resolve(x)))
      await store.put({ connectionId: id, status: 'verified', origin: TEST_ORIGIN, createdAt: Date.now(), expiresAt: 0 }, { ttlMs: 10_000 })
      await store.delete(id)
      assert.equal(await heard, id)
    } finally {
      await Promise.all([store.close(), peer.close()])
    }
  })

  it('serves only 503 then 200 through a primary failover, then verifies and revokes', async () => {
    const nodes = (await Promise.all([0, 1].map(() => startTestServer({ store: cluster.url, authCacheTtlMs: 0, leaseMs: 10_000 })))) as [TestServer, TestServer]
    try {
      const [n1, n2] = nodes
      const handshake = (n: TestServer) => verifiedHandshake(n.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      const held: HandshakeResult[] = await Promise.all(Array.from({ length: 9 }, (_, i) => handshake(nodes[i % 2]!)))
      const closer = await handshake(n1)
      for (const h of held) assert.equal(await status(n2, h.connectionId), 200)
      // Let the replicas receive every record before the kill.
      await new Promise((r) => setTimeout(r, 200))

      const seen = new Map<string, number[]>()
      let polling = true
      let lastFailureAt = 0
      const poller = (async () => {
        while (polling) {
          await Promise.all(
            held.flatMap((h) =>
              nodes.map(async (n) => {
                const code = await status(n, h.connectionId)
                const key = `${h.connectionId}@${n.url}`
                seen.set(key, [...(seen.get(key) ?? []), code])
                if (code !== 200) lastFailureAt = performance.now()
              }),
            ),
          )
          await new Promise((r) => setTimeout(r, 25))
        }
      })()
      const killedAt = performance.now()
      await cluster.nodes[0]!.kill()
      await eventually(() => lastFailureAt > 0, 5000, 'the outage is seen')
      await closer.client.close()
      await eventually(
        async () => (await Promise.all(held.flatMap((h) => nodes.map((n) => status(n, h.connectionId))))).every((c) => c === 200),
        20_000,
        'every open session admitted again',
      )
      polling = false
      await poller
      console.log(`# cluster failover: last 503 ${Math.round(lastFailureAt - killedAt)} ms after SIGKILL of a primary (cluster-node-timeout 1000 ms)`)
      const promoted = cluster.connect(3)
      try {
        assert.equal(((await promoted.call('ROLE')) as string[])[0], 'master', "the dead primary's replica took over")
      } finally {
        promoted.disconnect()
      }
      assert.ok([...seen.values()].some((codes) => codes.includes(503)), 'the outage was observed as 503')
      for (const [key, codes] of seen) assert.ok(codes.every((c) => c === 200 || c === 503), `${key}: only 200 and 503, saw ${codes.join(',')}`)

      await eventually(async () => (await status(n1, closer.connectionId)) === 401 && (await status(n2, closer.connectionId)) === 401, 5000, 'closed id revoked after the failover')
      const fresh = await handshake(n2)
      assert.equal(await status(n1, fresh.connectionId), 200)
      await fresh.client.close()
      await eventually(async () => (await status(n1, fresh.connectionId)) === 401, 1000, 'revoked on the other node')
      await assert.doesNotReject(openSocket(n1.wsUrl, { origin: TEST_ORIGIN }).then((c) => c.close()))
      await Promise.all(held.map((h) => h.client.close()))
    } finally {
      await Promise.all(nodes.map((n) => n.close()))
    }
  })
})
