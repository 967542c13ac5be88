/**
 * Managed Redis with a failover endpoint: one `redis://` address (a DNS name the provider
 * re-points) in front of a primary and a replica. Stood in for by a TCP forwarder on a
 * fixed port; the "failover" promotes the replica and re-points the forwarder. Two ways a
 * provider does it: the old primary dies and its connections drop, or it stays up as a
 * read-only replica and open connections keep reaching it until they see READONLY.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { eventually } from './contracts/protocol-suite.ts'
import { startPlainRedis, startSwitchableEndpoint, type RedisProcess, type SwitchableEndpoint } from './helpers/redis-ha.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { requireBinary } from './helpers/services.ts'
import { verifiedHandshake, type HandshakeResult } from './helpers/ws-client.ts'
import { Redis } from 'ioredis'
import { rmSync } from 'node:fs'

const redisBin = requireBinary('redis-server')

const status = async (node: TestServer, connectionId: string) =>
  (await fetch(`${node.url}/api/greeting`, { headers: { connectionId } })).status

describe('plain redis:// behind a failover endpoint', { skip: redisBin.skip }, () => {
  let primary: RedisProcess & { dir: string }
  let replica: RedisProcess & { dir: string }
  let endpoint: SwitchableEndpoint
  let nodes: [TestServer, TestServer]
  let held: HandshakeResult[]
  beforeEach(async () => {
    primary = await startPlainRedis(redisBin.path!)
    replica = await startPlainRedis(redisBin.path!, { replicaOf: primary.port })
    endpoint = await startSwitchableEndpoint(primary.port)
    const url = `redis://127.0.0.1:${endpoint.port}/0`
    nodes = (await Promise.all([0, 1].map(() => startTestServer({ store: url, authCacheTtlMs: 0, leaseMs: 10_000 })))) as [TestServer, TestServer]
    held = await Promise.all([0, 1, 2, 3].map((i) => verifiedHandshake(nodes[i % 2]!.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })))
    for (const h of held) assert.equal(await status(nodes[1], h.connectionId), 200)
    // Replication is asynchronous: wait until the replica has every record.
    const r = new Redis(replica.port, '127.0.0.1')
    try {
      await eventually(async () => (await r.keys('wsds:c:*')).length === held.length, 3000, 'replica caught up')
    } finally {
      r.disconnect()
    }
  })
  afterEach(async () => {
    await Promise.all(held.map((h) => h.client.close().catch(() => {})))
    await Promise.all(nodes.map((n) => n.close()))
    await endpoint.stop()
    await Promise.all([primary.stop(), replica.stop()])
    for (const p of [primary, replica]) rmSync(p.dir, { recursive: true, force: true })
  })

  const promoteReplica = async () => {
    const r = new Redis(replica.port, '127.0.0.1')
    try {
      await r.call('REPLICAOF', 'NO', 'ONE')
    } finally {
      r.disconnect()
    }
  }
  /** Polls every held id on both nodes until `done()`; returns every status seen. */
  const poll = (done: () => boolean) =>
    (async () => {
      const seen: number[] = []
      while (!done()) {
        seen.push(...(await Promise.all(held.flatMap((h) => nodes.map((n) => status(n, h.connectionId))))))
        await new Promise((r) => setTimeout(r, 25))
      }
      return seen
    })()
  const afterFailover = async () => {
    // New handshakes verify, and a close revokes on both nodes, on the new primary.
    const fresh = await verifiedHandshake(nodes[0].wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    assert.equal(await status(nodes[1], fresh.connectionId), 200)
    await fresh.client.close()
    await eventually(async () => (await status(nodes[0], fresh.connectionId)) === 401 && (await status(nodes[1], fresh.connectionId)) === 401, 1000, 'revoked')
    const r = new Redis(replica.port, '127.0.0.1')
    try {
      assert.equal(await r.exists(`wsds:c:${fresh.connectionId}`), 0, 'deleted on the new primary')
    } finally {
      r.disconnect()
    }
  }

  it('follows a switch where the old primary dies: 503 while nothing answers, then 200 again, never 401', async () => {
    let done = false
    const polled = poll(() => done)
    const t0 = performance.now()
    await primary.kill()
    await new Promise((r) => setTimeout(r, 500)) // the provider takes a while to promote
    await promoteReplica()
    endpoint.switchTo(replica.port, { dropExisting: true })
    await eventually(async () => (await Promise.all(held.flatMap((h) => nodes.map((n) => status(n, h.connectionId))))).every((c) => c === 200), 10_000, 'admitted again')
    const recovered = performance.now() - t0
    done = true
    const seen = await polled
    console.log(`# endpoint switch (old primary dead): admitted again ${Math.round(recovered)} ms after the kill (promotion at 500 ms)`)
    assert.ok(seen.every((c) => c === 200 || c === 503), `only 200 and 503: ${[...new Set(seen)].join(',')}`)
    await afterFailover()
  })

  it('follows a switch where the old primary stays up as a read-only replica (READONLY reconnects)', async () => {
    let done = false
    const polled = poll(() => done)
    await promoteReplica()
    endpoint.switchTo(replica.port) // open connections still reach the old primary
    const old = new Redis(primary.port, '127.0.0.1')
    try {
      await old.call('REPLICAOF', '127.0.0.1', String(replica.port))
    } finally {
      old.disconnect()
    }
    // Writes through connections still on the old primary fail once with READONLY, and
    // the client reconnects through the endpoint: a handshake eventually verifies.
    await eventually(
      async () => {
        try {
          const h = await verifiedHandshake(nodes[0].wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
          held.push(h)
          return true
        } catch {
          return false
        }
      },
      5000,
      'a handshake verifies after the switch',
    )
    done = true
    const seen = await polled
    assert.ok(seen.every((c) => c === 200 || c === 503), `only 200 and 503: ${[...new Set(seen)].join(',')}`)
    await afterFailover()
  })
})
