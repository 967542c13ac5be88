/**
 * Sentinel failover with real processes on loopback: a primary, a replica and 3 sentinels,
 * two gateways on `redis-sentinel://...` with the auth cache off (every request reads the
 * store). The primary is SIGKILLed while verified sockets stay open.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import type { RedisStore } from '../src/stores/redis.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { startSentinelSet, type SentinelSetHandle } from './helpers/redis-ha.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { requireBinary } from './helpers/services.ts'
import { openSocket, verifiedHandshake, type HandshakeResult } from './helpers/ws-client.ts'

const redisBin = requireBinary('redis-server')
// Longer than the failover (about 2.5 s here), as the default 30 s is: records outlive it.
const LEASE_MS = 10_000

const status = async (node: TestServer, connectionId: string) =>
  (await fetch(`${node.url}/api/greeting`, { headers: { connectionId } })).status

describe('Redis store under Sentinel: failover', { skip: redisBin.skip }, () => {
  let set: SentinelSetHandle
  let nodes: [TestServer, TestServer]
  before(async () => {
    set = await startSentinelSet(redisBin.path!, { downAfterMs: 1000 })
    nodes = (await Promise.all([0, 1].map(() => startTestServer({ store: set.url, authCacheTtlMs: 0, leaseMs: LEASE_MS })))) as [TestServer, TestServer]
  })
  after(async () => {
    await Promise.all((nodes ?? []).map((n) => n.close()))
    await set?.stop()
  })

  it('serves only 503 then 200 to open sessions through a SIGKILLed primary, then verifies, revokes and rewrites on the new one', async () => {
    const [n1, n2] = nodes
    const handshake = (n: TestServer) => verifiedHandshake(n.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    const held: HandshakeResult[] = [...(await Promise.all([0, 1, 2].map(() => handshake(n1)))), ...(await Promise.all([0, 1, 2].map(() => handshake(n2))))]
    const closer = await handshake(n1)
    for (const h of [...held, closer]) assert.equal(await status(n2, h.connectionId), 200)
    const oldPrimary = await set.currentPrimaryPort()

    // Every held id is polled on both nodes until the end of the failover.
    const seen = new Map<string, number[]>()
    let polling = true
    let firstFailureAt = 0
    let lastFailureAt = 0
    const poller = (async () => {
      while (polling) {
        await Promise.all(
          held.flatMap((h) =>
            [n1, n2].map(async (n) => {
              const code = await status(n, h.connectionId)
              const key = `${h.connectionId}@${n.url}`
              seen.set(key, [...(seen.get(key) ?? []), code])
              if (code !== 200) {
                lastFailureAt = performance.now()
                if (firstFailureAt === 0) firstFailureAt = lastFailureAt
              }
            }),
          ),
        )
        await new Promise((r) => setTimeout(r, 25))
      }
    })()

    const killedAt = performance.now()
    await set.primary.kill()
    await eventually(() => firstFailureAt > 0, 3000, 'requests see the outage')
    // During the outage: new handshakes are refused with 503, and a socket closes.
    await assert.rejects(openSocket(n2.wsUrl, { origin: TEST_ORIGIN }), { status: 503 })
    await closer.client.close()

    // Recovery: every held id answers 200 on both nodes again, without re-verifying.
    await eventually(
      async () => (await Promise.all(held.flatMap((h) => [status(n1, h.connectionId), status(n2, h.connectionId)]))).every((c) => c === 200),
      20_000,
      'open sessions admitted again after the failover',
    )
    polling = false
    await poller
    const recoveryMs = lastFailureAt - killedAt
    console.log(`# sentinel failover: 503 from ${Math.round(firstFailureAt - killedAt)} ms to ${Math.round(recoveryMs)} ms after SIGKILL (down-after 1000 ms)`)
    assert.notEqual(await set.currentPrimaryPort(), oldPrimary, 'the sentinels promoted the replica')

    for (const [key, codes] of seen) {
      // Each node's view of each id: admitted, then 503 while no primary answers, then
      // admitted again (the last round may still have been in flight during recovery).
      assert.ok(codes.every((c) => c === 200 || c === 503), `${key}: only 200 and 503, saw ${codes.join(',')}`)
      assert.match(codes.join(','), /^(200,)*(503,?)*(200,?)*(503)?$/, `${key}: one outage, then admitted`)
    }
    assert.ok([...seen.values()].some((codes) => codes.includes(503)), 'the outage was observed as 503')

    // The socket that closed during the failover is revoked once the store is back.
    await eventually(async () => (await status(n1, closer.connectionId)) === 401 && (await status(n2, closer.connectionId)) === 401, 5000, 'closed id revoked')
    assert.equal((n1.store as RedisStore).queuedDeletes, 0, 'the queued delete was sent')

    // New handshakes verify on the new primary and are admitted on the other node.
    const fresh = await handshake(n1)
    assert.equal(await status(n2, fresh.connectionId), 200)
    // And a close now revokes on every node through the new primary's pub/sub.
    const warm = held[0]!
    assert.equal(await status(n2, warm.connectionId), 200)
    await warm.client.close()
    await eventually(async () => (await status(n1, warm.connectionId)) === 401 && (await status(n2, warm.connectionId)) === 401, 1000, 'revoked on both nodes')

    // A record the new primary lost (replication is asynchronous) is rewritten by the lease renewal.
    const lost = held[1]!
    const primary = new Redis(await set.currentPrimaryPort(), '127.0.0.1')
    try {
      assert.equal(await primary.del(`wsds:c:${lost.connectionId}`), 1)
    } finally {
      primary.disconnect()
    }
    await eventually(async () => (await status(n2, lost.connectionId)) === 200, LEASE_MS / 3 + 2000, 'lost record rewritten by its owner')

    await Promise.all([fresh, ...held.slice(1)].map((h) => h.client.close()))
  })
})
