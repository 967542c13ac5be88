import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, describe, it } from 'node:test'
import { createKeyRing } from '../src/core/keyring.ts'
import { openConnection, transition, type ConnectionState, type LifecycleContext } from '../src/core/lifecycle.ts'
import type { ChallengeMessage, CodeChallengeMessage } from '../src/core/protocol.ts'
import { createRandomPool } from '../src/core/random.ts'
import { attachGateway, type Gateway } from '../src/gateway/gateway.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { deadlineSuite } from './contracts/deadline-suite.ts'
import { startTarget, testKeySet, TEST_ORIGIN } from './helpers/server.ts'
import { openSocket } from './helpers/ws-client.ts'

deadlineSuite('self-hosted gateway, memory store', startTarget)

const random = createRandomPool()
const keyRing = createKeyRing([testKeySet])
const HOST = 'app.wsds.test'
const T0 = 1_700_000_000_000
const TIMEOUT = 10_000

function solveCode(c: ChallengeMessage): unknown {
  const fn = new Function('location', 'return (' + (c as CodeChallengeMessage).code + ')')({ hostname: HOST }) as (a: { keys: readonly string[] }) => unknown
  return fn({ keys: testKeySet.keys })
}

describe('deadline checked on arrival (lifecycle)', () => {
  const ctx = (now: number): LifecycleContext => ({ now, keyRing, random, timeoutMs: TIMEOUT })
  const open = (): ConnectionState => openConnection({ connectionId: 'c'.repeat(22), origin: `http://${HOST}`, hostname: HOST, now: T0, timeoutMs: TIMEOUT }).state
  const challengeIn = (actions: { type: string; message?: { type: string } }[]): ChallengeMessage =>
    (actions.find((a) => a.type === 'send' && a.message?.type === 'challenge') as unknown as { message: ChallengeMessage }).message

  it('refuses a correct answer that arrives at the deadline, before any deadline event, with timeout 4408', () => {
    const hello = transition(open(), { type: 'text', text: '{"action":"hello","v":1}' }, ctx(T0))
    const c = challengeIn(hello.actions)
    const t = transition(hello.state, { type: 'text', text: JSON.stringify({ action: 'answer', token: c.token, result: solveCode(c) }) }, ctx(T0 + TIMEOUT))
    assert.equal(t.outcome, 'timeout')
    assert.equal(t.state.phase, 'closed')
    assert.ok(t.actions.some((a) => a.type === 'close' && a.code === 4408))
    assert.ok(!t.actions.some((a) => a.type === 'persist-verified'))
  })

  it('accepts the same answer one millisecond before the deadline', () => {
    const hello = transition(open(), { type: 'text', text: '{"action":"hello","v":1}' }, ctx(T0))
    const c = challengeIn(hello.actions)
    const t = transition(hello.state, { type: 'text', text: JSON.stringify({ action: 'answer', token: c.token, result: solveCode(c) }) }, ctx(T0 + TIMEOUT - 1))
    assert.equal(t.outcome, 'verified')
  })

  it('refuses a hello that arrives after the deadline with timeout and sends no challenge', () => {
    const t = transition(open(), { type: 'text', text: '{"action":"hello","v":1}' }, ctx(T0 + TIMEOUT + 5_000))
    assert.equal(t.outcome, 'timeout')
    assert.ok(!t.actions.some((a) => a.type === 'send' && a.message.type === 'challenge'))
  })

  it('refuses a correct answer to a re-challenge after its deadline, revoking the verified connection', () => {
    const hello = transition(open(), { type: 'text', text: '{"action":"hello","v":1}' }, ctx(T0))
    const c = challengeIn(hello.actions)
    const v = transition(hello.state, { type: 'text', text: JSON.stringify({ action: 'answer', token: c.token, result: solveCode(c) }) }, ctx(T0 + 10))
    assert.equal(v.state.phase, 'verified')
    const re = transition(v.state, { type: 'rechallenge' }, ctx(T0 + 60_000))
    const c2 = challengeIn(re.actions)
    const late = transition(re.state, { type: 'text', text: JSON.stringify({ action: 'answer', token: c2.token, result: solveCode(c2) }) }, ctx(T0 + 60_000 + TIMEOUT))
    assert.equal(late.outcome, 'timeout')
    assert.equal(late.state.phase, 'closed')
    assert.ok(late.actions.some((a) => a.type === 'close' && a.code === 4408))
  })

  it('leaves a verified connection with nothing outstanding alone however late its messages come', () => {
    const hello = transition(open(), { type: 'text', text: '{"action":"hello","v":1}' }, ctx(T0))
    const c = challengeIn(hello.actions)
    const v = transition(hello.state, { type: 'text', text: JSON.stringify({ action: 'answer', token: c.token, result: solveCode(c) }) }, ctx(T0 + 10))
    const ping = transition(v.state, { type: 'text', text: '{"action":"ping"}' }, ctx(T0 + 3_600_000))
    assert.equal(ping.state.phase, 'verified')
    assert.deepEqual(ping.actions, [{ type: 'send', message: { type: 'pong' } }])
  })
})

describe('deadline timer (gateway)', () => {
  const servers: Array<{ server: Server; gateway: Gateway }> = []
  after(async () => {
    for (const { server, gateway } of servers) {
      await gateway.close()
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
  })

  it('re-arms a timer that fires before the clock reaches the deadline, and closes 4408 once it does', async () => {
    // A clock that falls behind the timer: the case Node produces under load, when a timer
    // fires a few ms before Date.now() reaches the time it was armed for.
    let skewMs = 0
    const server = createServer()
    const gateway = attachGateway(server, {
      store: createMemoryStore(),
      keyRing,
      allowedOrigins: [TEST_ORIGIN],
      challengeTimeoutMs: 300,
      heartbeatMs: 0,
      now: () => Date.now() - skewMs,
    })
    servers.push({ server, gateway })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/wsds`
    const client = await openSocket(url, { origin: TEST_ORIGIN })
    const opened = performance.now()
    skewMs = 200
    const closed = await Promise.race([client.closed, new Promise<null>((r) => setTimeout(() => r(null), 5000))])
    assert.ok(closed !== null, 'the socket was never closed: the early timer was not re-armed')
    assert.equal(closed.code, 4408)
    assert.ok(performance.now() - opened >= 450, 'closed only once the (lagging) clock reached the deadline')
    for (let i = 0; i < 100 && gateway.openConnections > 0; i++) await new Promise((r) => setTimeout(r, 10))
    assert.equal(gateway.openConnections, 0)
  })
})
