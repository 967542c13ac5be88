/**
 * The gateway's named parts on their own (src/gateway/): upgrade admission, record
 * persistence, the deadline queue and the per-socket session, each over real sockets and a
 * real memory store. The whole gateway is covered by test/gateway.test.ts (PROTOCOL.md
 * conformance) and test/deadline.test.ts.
 */
import { NO_OBSERVER } from '../src/core/observer.ts'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { after, describe, it } from 'node:test'
import { WebSocketServer } from 'ws'
import { createKeyRing } from '../src/core/keyring.ts'
import { openConnection, transition, type LifecycleContext } from '../src/core/lifecycle.ts'
import { createOriginPolicy } from '../src/core/origin.ts'
import { createRandomPool } from '../src/core/random.ts'
import type { ConnectionRecord, Store } from '../src/core/store.ts'
import { attachGateway } from '../src/gateway/gateway.ts'
import { createDeadlineQueue, deadlineTickMs, type Deadlined } from '../src/gateway/deadlines.ts'
import { createRecordKeeper } from '../src/gateway/records.ts'
import { GatewaySocket, MESSAGE_BURST, Session, type SessionHost } from '../src/gateway/session.ts'
import { createGatewayStats } from '../src/gateway/stats.ts'
import { createUpgradeAdmission, forwardedAddress, type AdmissionOptions } from '../src/gateway/upgrade.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { testKeySet, TEST_ORIGIN } from './helpers/server.ts'
import { openSocket, solve, type TestClient } from './helpers/ws-client.ts'

const random = createRandomPool()
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = performance.now() + timeoutMs
  while (!condition()) {
    if (performance.now() > until) throw new Error('condition not met in time')
    await sleep(5)
  }
}

const servers: Server[] = []
after(async () => {
  for (const server of servers) {
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  }
})

async function listen(server: Server): Promise<string> {
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/wsds`
}

describe('deadline queue', () => {
  class Item implements Deadlined {
    deadlineSlot = -1
    constructor(readonly name: string) {}
  }

  it('hands an item over once the clock reaches its deadline, never before', async () => {
    let clock = 1_000_000
    const due: string[] = []
    const q = createDeadlineQueue<Item>({ tickMs: 5, now: () => clock, onDue: (item) => due.push(item.name) })
    q.arm(new Item('a'), clock + 100)
    clock += 99
    await sleep(40)
    assert.deepEqual(due, [], 'one millisecond before the deadline nothing is due')
    clock += 1
    await waitFor(() => due.length > 0)
    assert.deepEqual(due, ['a'])
    assert.equal(q.size, 0)
    q.stop()
  })

  it('moves an item armed twice and forgets a cancelled one', async () => {
    let clock = 2_000_000
    const due: string[] = []
    const q = createDeadlineQueue<Item>({ tickMs: 5, now: () => clock, onDue: (item) => due.push(item.name) })
    const a = new Item('a')
    const b = new Item('b')
    q.arm(a, clock + 10)
    q.arm(a, clock + 1000)
    q.arm(b, clock + 10)
    assert.equal(q.size, 2, 'arming again moves the item, it does not add a second entry')
    q.cancel(b)
    q.cancel(b)
    assert.equal(q.size, 1)
    clock += 20
    await sleep(40)
    assert.deepEqual(due, [], 'the moved and the cancelled deadline did not fire')
    clock += 1000
    await waitFor(() => due.length > 0)
    assert.deepEqual(due, ['a'])
    q.stop()
  })

  it('lets a handler arm the item again from inside onDue', async () => {
    let clock = 3_000_000
    let fired = 0
    const q = createDeadlineQueue<Item>({
      tickMs: 5,
      now: () => clock,
      onDue: (item) => {
        if (++fired === 1) q.arm(item, clock + 50)
      },
    })
    q.arm(new Item('a'), clock + 10)
    clock += 10
    await waitFor(() => fired === 1)
    assert.equal(q.size, 1)
    clock += 50
    await waitFor(() => fired === 2)
    assert.equal(q.size, 0)
    q.stop()
  })

  it('fires nothing after stop', async () => {
    let clock = 4_000_000
    let fired = 0
    const q = createDeadlineQueue<Item>({ tickMs: 5, now: () => clock, onDue: () => fired++ })
    q.arm(new Item('a'), clock + 10)
    q.stop()
    clock += 100
    await sleep(30)
    assert.equal(fired, 0)
    assert.equal(q.size, 0)
  })

  it('refuses a slot width that is not a positive integer', () => {
    assert.throws(() => createDeadlineQueue({ tickMs: 0, now: Date.now, onDue: () => {} }), RangeError)
    assert.throws(() => createDeadlineQueue({ tickMs: 2.5, now: Date.now, onDue: () => {} }), RangeError)
  })

  it('sizes its slots to a fiftieth of the challenge timeout, between 5 and 50 ms', () => {
    assert.equal(deadlineTickMs(10_000), 50)
    assert.equal(deadlineTickMs(1000), 20)
    assert.equal(deadlineTickMs(100), 5)
  })
})

describe('upgrade admission', () => {
  interface Admitted {
    origin: string
    hostname: string
    remote: string | null
  }

  async function admission(overrides: Partial<AdmissionOptions> = {}) {
    const stats = createGatewayStats()
    const admitted: Admitted[] = []
    const server = createServer()
    const check = createUpgradeAdmission({
      path: '/wsds',
      origins: createOriginPolicy([TEST_ORIGIN]),
      rateLimiter: null,
      trustProxy: false,
      stats,
      now: Date.now,
      closing: () => false,
      admit(_req: IncomingMessage, socket: Duplex, _head: Buffer, origin: string, hostname: string, remote: string | null) {
        admitted.push({ origin, hostname, remote })
        socket.end('HTTP/1.1 418 Admitted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      },
      ...overrides,
    })
    const unclaimed: string[] = []
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => {})
      if (!check(req, socket, head)) {
        unclaimed.push(req.url ?? '')
        socket.destroy()
      }
    })
    const url = await listen(server)
    return { stats, admitted, unclaimed, url }
  }

  async function status(url: string, headers: Record<string, string> = {}): Promise<number | null> {
    try {
      const client = await openSocket(url, { headers })
      client.ws.terminate()
      return 101
    } catch (err) {
      return (err as { status?: number }).status ?? null
    }
  }

  it('admits an allowed Origin with its hostname, and no client address when no check needed one', async () => {
    const a = await admission()
    assert.equal(await status(a.url, { origin: TEST_ORIGIN }), 418)
    assert.deepEqual(a.admitted, [{ origin: TEST_ORIGIN, hostname: 'app.wsds.test', remote: null }])
  })

  it('refuses an Origin not on the allowlist with 403 and counts it', async () => {
    const a = await admission()
    assert.equal(await status(a.url, { origin: 'http://evil.wsds.test' }), 403)
    assert.equal(await status(a.url), 403, 'no Origin at all')
    assert.equal(a.stats.upgradesRefused.origin, 2)
    assert.equal(a.admitted.length, 0)
  })

  it('asks the rate limiter first: a refused address gets 429 whatever its Origin', async () => {
    const keys: string[] = []
    const a = await admission({ rateLimiter: { take: (key) => (keys.push(key), false) } })
    assert.equal(await status(a.url, { origin: 'http://evil.wsds.test' }), 429)
    assert.equal(a.stats.upgradesRefused['rate-limit'], 1)
    assert.equal(a.stats.upgradesRefused.origin, 0)
    assert.deepEqual(keys, ['127.0.0.1'])
  })

  it('lets the Origin decide when a shared rate limiter cannot be reached', async () => {
    const a = await admission({ rateLimiter: { take: () => Promise.reject(new Error('limiter down')) } })
    assert.equal(await status(a.url, { origin: TEST_ORIGIN }), 418)
    assert.equal(a.admitted[0]!.remote, '127.0.0.1', 'the address the limiter was asked about is passed on')
    assert.equal(await status(a.url, { origin: 'http://evil.wsds.test' }), 403)
  })

  it('refuses every upgrade with 503 while the gateway closes', async () => {
    const a = await admission({ closing: () => true })
    assert.equal(await status(a.url, { origin: TEST_ORIGIN }), 503)
    assert.equal(a.stats.upgradesRefused['shutting-down'], 1)
  })

  it('leaves other paths to the caller', async () => {
    const a = await admission()
    assert.equal(await status(a.url.replace('/wsds', '/other?x=1'), { origin: TEST_ORIGIN }), null)
    assert.deepEqual(a.unclaimed, ['/other?x=1'])
    assert.equal(await status(a.url + '?v=1', { origin: TEST_ORIGIN }), 418, 'a query string does not change the path')
  })

  it('takes the first X-Forwarded-For hop only from a trusted proxy, cut to 64 characters', async () => {
    const a = await admission({ trustProxy: true })
    assert.equal(await status(a.url, { origin: TEST_ORIGIN, 'x-forwarded-for': '203.0.113.9, 10.0.0.1' }), 418)
    assert.equal(a.admitted[0]!.remote, '203.0.113.9')
    const req = { headers: { 'x-forwarded-for': 'x'.repeat(500) } } as unknown as IncomingMessage
    assert.equal(forwardedAddress(req, true), 'x'.repeat(64))
    assert.equal(forwardedAddress(req, false), null)
  })
})

describe('record persistence', () => {
  function keeper(store: Store = createMemoryStore(), leaseMs = 30_000) {
    const stats = createGatewayStats()
    return { stats, store, records: createRecordKeeper({ store, leaseMs, nodeId: 'node-1', random, now: Date.now, stats }) }
  }

  it('makes a pending record with a fresh id, this node and a lease', async () => {
    const { records, store } = keeper()
    const before = Date.now()
    const a = records.pending(TEST_ORIGIN)
    const b = records.pending(TEST_ORIGIN)
    assert.notEqual(a.connectionId, b.connectionId)
    assert.match(a.connectionId, /^[A-Za-z0-9_-]{22}$/)
    assert.equal(a.status, 'pending')
    assert.equal(a.nodeId, 'node-1')
    assert.ok(a.createdAt >= before && a.expiresAt === a.createdAt + 30_000)
    assert.equal(await store.get(a.connectionId), null, 'not stored until put')
    await records.put(a)
    assert.equal((await store.get(a.connectionId))?.status, 'pending')
  })

  it('marks a record verified with its binding key and leaves the pending one as it was', () => {
    const { records } = keeper()
    const pending = records.pending(TEST_ORIGIN)
    const verified = records.verified(pending, pending.createdAt + 5, 'k-req')
    assert.equal(verified.status, 'verified')
    assert.equal(verified.verifiedAt, pending.createdAt + 5)
    assert.equal(verified.bindKey, 'k-req')
    assert.equal(verified.expiresAt, pending.createdAt + 5 + 30_000)
    assert.equal(pending.status, 'pending')
    assert.equal(records.verified(pending, pending.createdAt, undefined).bindKey, undefined)
  })

  it('counts a delete the store refuses, never throws, and settles once every delete has finished', async () => {
    const inner = createMemoryStore()
    let release = () => {}
    const gate = new Promise<void>((r) => (release = r))
    const store: Store = { ...inner, delete: async () => (await gate, Promise.reject(new Error('store down'))) }
    const { records, stats } = keeper(store)
    void records.delete('some-id')
    let settled = false
    const done = records.settled().then(() => (settled = true))
    await sleep(20)
    assert.equal(settled, false, 'a delete still under way holds settled()')
    release()
    await done
    assert.equal(stats.storeErrors, 1)
  })

  it('renews leases in one batch and writes back a record the store lost', async () => {
    const { records, store } = keeper(createMemoryStore(), 150)
    const record = records.pending(TEST_ORIGIN)
    await records.put(record)
    const batches: string[][] = []
    const renewing: Store = store
    const realRenew = renewing.renew.bind(renewing)
    renewing.renew = (ids, opts) => (batches.push([...ids]), realRenew(ids, opts))
    await store.delete(record.connectionId)
    const stop = records.renewLeases(
      () => [record.connectionId],
      () => record,
    )
    await waitFor(() => batches.length > 0)
    await waitFor(() => (store as ReturnType<typeof createMemoryStore>).size === 1)
    stop()
    assert.deepEqual(batches[0], [record.connectionId])
  })
})

describe('session', () => {
  const keyRing = createKeyRing([testKeySet])
  const HOST = 'app.wsds.test'

  /** A server whose upgrades become sessions over the real lifecycle, records and deadlines. */
  async function sessionServer(store: Store = createMemoryStore()) {
    const stats = createGatewayStats()
    const records = createRecordKeeper({ store, leaseMs: 30_000, nodeId: 'n', random, now: Date.now, stats })
    const sessions = new Set<Session>()
    const deadlines = createDeadlineQueue<Session>({ tickMs: 5, now: Date.now, onDue: (s) => s.expire() })
    const host: SessionHost = {
      now: Date.now,
      stats,
      observer: NO_OBSERVER,
      logger: undefined,
      records,
      context: (): LifecycleContext => ({ now: Date.now(), keyRing, random, timeoutMs: 2000 }),
      deadline: (s, at) => (at === null ? deadlines.cancel(s) : deadlines.arm(s, at)),
      settled: () => {},
      owns: (s) => sessions.has(s),
      forget: (s) => void sessions.delete(s),
    }
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, WebSocket: GatewaySocket })
    const server = createServer()
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const record = records.pending(TEST_ORIGIN)
      void records.put(record).then(() =>
        wss.handleUpgrade(req, socket, head, (ws) => {
          const opened = openConnection({ connectionId: record.connectionId, origin: TEST_ORIGIN, hostname: HOST, now: record.createdAt, timeoutMs: 2000 })
          sessions.add(new Session(host, ws as GatewaySocket, socket, record, opened, null, 'other'))
        }),
      )
    })
    const url = await listen(server)
    after(() => deadlines.stop())
    return { url, stats, sessions, store }
  }

  async function challenged(url: string): Promise<{ client: TestClient; challenge: Awaited<ReturnType<TestClient['expect']>> & { type: 'challenge' } }> {
    const client = await openSocket(url, { origin: TEST_ORIGIN })
    client.send({ action: 'hello', v: 1 })
    await client.expect('connection')
    const challenge = (await client.expect('challenge')) as Awaited<ReturnType<TestClient['expect']>> & { type: 'challenge' }
    return { client, challenge }
  }

  it('looks the client address up only when something asks for it', async () => {
    const s = await sessionServer()
    const client = await openSocket(s.url, { origin: TEST_ORIGIN })
    await waitFor(() => s.sessions.size === 1)
    const session = [...s.sessions][0]!
    assert.equal(session.remote, '127.0.0.1')
    await client.close()
  })

  it('closes a socket that sends more than its message budget with 4429', async () => {
    const s = await sessionServer()
    const client = await openSocket(s.url, { origin: TEST_ORIGIN })
    for (let i = 0; i < MESSAGE_BURST + 5; i++) client.send({ action: 'ping' })
    const closed = await client.closed
    assert.equal(closed.code, 4429)
    assert.equal(s.stats.rateLimitedSockets, 1)
  })

  it('closes with 1009 where ws would close with 1008', async () => {
    const s = await sessionServer()
    const client = await openSocket(s.url, { origin: TEST_ORIGIN })
    await waitFor(() => s.sessions.size === 1)
    ;[...s.sessions][0]!.ws.close(1008, 'policy')
    assert.equal((await client.closed).code, 1009)
  })

  it('rejects a challenge not answered in time with timeout and 4408, through the deadline queue', async () => {
    const s = await sessionServer()
    const { client } = await challenged(s.url)
    const rejected = await client.expect('rejected', 5000)
    assert.equal(rejected.reason, 'timeout')
    assert.equal((await client.closed).code, 4408)
  })

  it('replays frames that arrive while the verified record is written, after the verified frame', async () => {
    const inner = createMemoryStore()
    const store: Store = {
      ...inner,
      put: async (record: ConnectionRecord, options) => {
        if (record.status === 'verified') await sleep(100)
        return inner.put(record, options)
      },
    }
    const s = await sessionServer(store)
    const { client, challenge } = await challenged(s.url)
    client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, testKeySet.keys, HOST) })
    client.send({ action: 'ping' })
    await client.expect('verified')
    await client.expect('pong')
    await client.close()
    await waitFor(() => inner.size === 0)
  })

  it('closes with 1011 and sends no verified frame when the verified record cannot be written', async () => {
    const inner = createMemoryStore()
    const store: Store = {
      ...inner,
      put: (record: ConnectionRecord, options) => (record.status === 'verified' ? Promise.reject(new Error('store down')) : inner.put(record, options)),
    }
    const s = await sessionServer(store)
    const { client, challenge } = await challenged(s.url)
    client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, testKeySet.keys, HOST) })
    assert.equal(await client.next(), null, 'no frame before the close')
    assert.equal((await client.closed).code, 1011)
    assert.equal(s.stats.storeErrors, 1)
  })

  it('runs the same transitions as core: the session state is what transition() returns', async () => {
    const s = await sessionServer()
    const { client } = await challenged(s.url)
    const session = [...s.sessions][0]!
    assert.equal(session.state.phase, 'pending')
    assert.ok(session.state.outstanding !== null)
    // The same event on the same state gives what the session will do next.
    const next = transition(session.state, { type: 'text', text: '{"action":"ping"}' }, { now: Date.now(), keyRing, random, timeoutMs: 2000 })
    assert.deepEqual(next.actions, [{ type: 'send', message: { type: 'pong' } }])
    await client.close()
    await waitFor(() => s.sessions.size === 0)
  })
})

describe('gateway timers', () => {
  it('arms no timer per handshaking socket: 50 open sockets share one', async () => {
    const server = createServer()
    const gateway = attachGateway(server, { store: createMemoryStore(), keyRing: createKeyRing([testKeySet]), allowedOrigins: [TEST_ORIGIN], heartbeatMs: 0 })
    const url = await listen(server)
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const before = timers()
    const clients = await Promise.all(Array.from({ length: 50 }, () => openSocket(url, { origin: TEST_ORIGIN })))
    await waitFor(() => gateway.openConnections === 50)
    assert.ok(timers() - before < 5, `${timers() - before} timers for 50 sockets`)
    await Promise.all(clients.map((c) => c.close()))
    await gateway.close()
  })
})
