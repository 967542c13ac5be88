/**
 * Proof of work (docs/protocol.md, "Proof of work"): the SDK's pure-JS SHA-256 against
 * node:crypto, the puzzle and its one-hash check, the escalation policy, the lifecycle, and
 * the real gateway refusing wrong and reused nonces.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { connect } from '../src/client/index.ts'
import { solvePow } from '../src/client/pow.ts'
import { sha256 } from '../src/core/sha256.ts'
import { createKeyRing } from '../src/core/keyring.ts'
import { openConnection, transition, type ConnectionState, type LifecycleContext, type Transition } from '../src/core/lifecycle.ts'
import { createPowPolicy } from '../src/core/pow-policy.ts'
import { hasLeadingZeroBits, parsePowAnswer, powInput, verifyPow } from '../src/core/pow.ts'
import type { ChallengeMessage, ServerMessage } from '../src/core/protocol.ts'
import { createRandomPool } from '../src/core/random.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { openSocket, solve } from './helpers/ws-client.ts'

const nodeSha256 = (data: Uint8Array): Uint8Array => createHash('sha256').update(data).digest()
const hostname = new URL(TEST_ORIGIN).hostname
/** The SDK's evaluator with a page `location`, which Node lacks. */
const evaluateAt = (host: string) => (code: string) => new Function('location', `return (${code})`)({ hostname: host })

describe('the SDK SHA-256', () => {
  it('matches node:crypto on random inputs of every length up to three blocks and on large ones', () => {
    for (let n = 0; n < 200; n++) {
      const data = randomBytes(n)
      assert.equal(Buffer.from(sha256(data)).toString('hex'), createHash('sha256').update(data).digest('hex'), `length ${n}`)
    }
    for (const n of [1000, 4096, 65_537]) {
      const data = randomBytes(n)
      assert.equal(Buffer.from(sha256(data)).toString('hex'), createHash('sha256').update(data).digest('hex'), `length ${n}`)
    }
  })

  it('gives the FIPS 180-4 digest of "abc"', () => {
    assert.equal(Buffer.from(sha256(new TextEncoder().encode('abc'))).toString('hex'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })
})

describe('the puzzle', () => {
  it('counts leading zero bits across byte boundaries', () => {
    assert.equal(hasLeadingZeroBits(Uint8Array.of(0, 0x0f, 0xff), 12), true)
    assert.equal(hasLeadingZeroBits(Uint8Array.of(0, 0x0f, 0xff), 13), false)
    assert.equal(hasLeadingZeroBits(Uint8Array.of(0, 0), 16), true)
    assert.equal(hasLeadingZeroBits(Uint8Array.of(0x80), 1), false)
    assert.equal(hasLeadingZeroBits(Uint8Array.of(0x80), 0), true)
  })

  it('solves with the SDK and verifies with one node:crypto hash', async () => {
    const token = 'AAAAAAAAAAAAAAAAAAAAAA'
    const work = await solvePow(token, 14)
    assert.ok(work !== null)
    assert.match(work.nonce, /^\d+$/)
    assert.deepEqual(verifyPow(token, 14, work, nodeSha256), { ok: true, solveMs: work.ms })
    assert.ok(hasLeadingZeroBits(nodeSha256(powInput(token, work.nonce)), 14))
  })

  it('binds the work to its token: the same nonce fails for another token', async () => {
    const work = (await solvePow('tokenAtokenAtokenAtoken', 16))!
    // The nonce found for token A is not a solution for token B (checked, not assumed).
    const other = 'tokenBtokenBtokenBtoken'
    assert.equal(hasLeadingZeroBits(nodeSha256(powInput(other, work.nonce)), 16), false)
    assert.deepEqual(verifyPow(other, 16, work, nodeSha256), { ok: false, why: 'insufficient' })
  })

  it('refuses missing, malformed and non-solving work', () => {
    const token = 'AAAAAAAAAAAAAAAAAAAAAA'
    assert.deepEqual(verifyPow(token, 8, undefined, nodeSha256), { ok: false, why: 'missing' })
    for (const bad of [null, 7, 'x', {}, { nonce: 5 }, { nonce: '' }, { nonce: 'a b' }, { nonce: 'x'.repeat(33) }]) {
      assert.deepEqual(verifyPow(token, 8, bad, nodeSha256), { ok: false, why: 'malformed' }, JSON.stringify(bad))
    }
    let nonce = 0
    while (hasLeadingZeroBits(nodeSha256(powInput(token, String(nonce))), 8)) nonce++
    assert.deepEqual(verifyPow(token, 8, { nonce: String(nonce) }, nodeSha256), { ok: false, why: 'insufficient' })
  })

  it('keeps a sane reported solve time and drops a silly one', () => {
    assert.deepEqual(parsePowAnswer({ nonce: '1', ms: 12.5 }), { nonce: '1', solveMs: 12.5 })
    assert.deepEqual(parsePowAnswer({ nonce: '1', ms: -1 }), { nonce: '1', solveMs: null })
    assert.deepEqual(parsePowAnswer({ nonce: '1', ms: 'fast' }), { nonce: '1', solveMs: null })
  })

  it('yields to the event loop while it searches', async () => {
    let ticks = 0
    const timer = setInterval(() => ticks++, 1)
    const started = Date.now()
    const work = await solvePow('yieldyieldyieldyieldyi', 18, { sliceMs: 4 })
    clearInterval(timer)
    assert.ok(work !== null)
    const elapsed = Date.now() - started
    // A search longer than a few slices must have let the interval run in between.
    if (elapsed > 40) assert.ok(ticks >= 3, `${ticks} ticks during a ${elapsed} ms search`)
  })

  it('stops when cancelled', async () => {
    assert.equal(await solvePow('cancelcancelcancelcanc', 32, { cancelled: () => true, sliceMs: 1 }), null)
  })
})

describe('escalation policy', () => {
  it('gives the base difficulty when the cap does not allow escalation', () => {
    const p = createPowPolicy({ baseBits: 10, maxBits: 10, now: () => 0 })
    for (let i = 0; i < 100; i++) p.recordFailure('10.0.0.1')
    assert.equal(p.bitsFor('10.0.0.1', 1_000_000), 10)
    assert.equal(p.trackedAddresses, 0)
  })

  it('adds 2 bits per doubling of an address score, halves it per half-life, and caps', () => {
    let t = 0
    const p = createPowPolicy({ baseBits: 8, maxBits: 16, now: () => t, halfLifeMs: 1000 })
    assert.equal(p.bitsFor('10.0.0.1', 0), 8)
    p.recordFailure('10.0.0.1')
    assert.equal(p.bitsFor('10.0.0.1', 0), 10)
    assert.equal(p.bitsFor('10.0.0.2', 0), 8, 'other addresses are unaffected')
    p.recordFailure('10.0.0.1')
    p.recordFailure('10.0.0.1')
    assert.equal(p.bitsFor('10.0.0.1', 0), 12)
    t += 1000
    assert.equal(p.bitsFor('10.0.0.1', 0), 10, 'score 3 halves to 1.5')
    for (let i = 0; i < 1000; i++) p.recordFailure('10.0.0.1')
    assert.equal(p.bitsFor('10.0.0.1', 0), 16, 'capped')
  })

  it('escalates slowly on upgrades: sixteen make one failure', () => {
    const p = createPowPolicy({ baseBits: 0, maxBits: 20, now: () => 0 })
    for (let i = 0; i < 15; i++) p.recordUpgrade('10.0.0.3')
    assert.equal(p.bitsFor('10.0.0.3', 0), 0)
    p.recordUpgrade('10.0.0.3')
    assert.equal(p.bitsFor('10.0.0.3', 0), 2)
  })

  it('raises everyone under load', () => {
    const p = createPowPolicy({ baseBits: 4, maxBits: 20, now: () => 0, loadThreshold: 100 })
    assert.equal(p.bitsFor('a', 99), 4)
    assert.equal(p.bitsFor('a', 100), 6)
    assert.equal(p.bitsFor('a', 400), 10)
  })

  it('tracks a bounded number of addresses, dropping the least recently touched', () => {
    const p = createPowPolicy({ baseBits: 0, maxBits: 20, now: () => 0, maxAddresses: 3 })
    for (const a of ['a', 'b', 'c', 'd']) p.recordFailure(a)
    assert.equal(p.trackedAddresses, 3)
    assert.equal(p.bitsFor('a', 0), 0)
    assert.equal(p.bitsFor('d', 0), 2)
  })

  it('rejects a bad configuration by name', () => {
    assert.throws(() => createPowPolicy({ baseBits: 33, maxBits: 33, now: () => 0 }), /baseBits/)
  })
})

describe('lifecycle with proof of work', () => {
  const random = createRandomPool()
  const keyRing = createKeyRing([testKeySet])
  const ctx = (powBits: number): LifecycleContext => ({ now: 1000, keyRing, random, timeoutMs: 10_000, powBits, sha256: nodeSha256 })
  const challengeOf = (t: Transition): ChallengeMessage => {
    const c = t.actions.find((a) => a.type === 'send' && a.message.type === 'challenge')
    assert.ok(c && c.type === 'send')
    return c.message as ChallengeMessage
  }
  const start = (powBits: number): { state: ConnectionState; challenge: ChallengeMessage } => {
    const opened = openConnection({ connectionId: 'c1', origin: TEST_ORIGIN, hostname, now: 1000, timeoutMs: 10_000 })
    const t = transition(opened.state, { type: 'text', text: JSON.stringify({ action: 'hello', v: 1 }) }, ctx(powBits))
    return { state: t.state, challenge: challengeOf(t) }
  }
  const answer = async (state: ConnectionState, c: ChallengeMessage, pow: unknown, powBits = 0) =>
    transition(state, { type: 'text', text: JSON.stringify({ action: 'answer', token: c.token, result: await solve(c, testKeySet.keys, hostname), pow }) }, ctx(powBits))

  it('asks for no work at 0 bits and for the configured work otherwise, in a separate field', () => {
    assert.equal(start(0).challenge.pow, undefined)
    const { challenge } = start(10)
    assert.deepEqual(challenge.pow, { alg: 'sha256', bits: 10 })
    assert.equal(typeof (challenge as { code?: string }).code, 'string')
  })

  it('asks for no work without a hash to check it', () => {
    const opened = openConnection({ connectionId: 'c1', origin: TEST_ORIGIN, hostname, now: 1000, timeoutMs: 10_000 })
    const t = transition(opened.state, { type: 'text', text: '{"action":"hello","v":1}' }, { ...ctx(10), sha256: undefined })
    assert.equal(challengeOf(t).pow, undefined)
  })

  it('verifies a correct answer with valid work and reports bits and solve time', async () => {
    const { state, challenge } = start(10)
    const work = await solvePow(challenge.token, 10)
    const t = await answer(state, challenge, work)
    assert.equal(t.outcome, 'verified')
    assert.deepEqual(t.pow, { bits: 10, solveMs: work!.ms })
  })

  it('rejects a correct answer without work, or with work that does not solve, as wrong-answer (4401)', async () => {
    for (const pow of [undefined, { nonce: 'nope' }]) {
      const { state, challenge } = start(12)
      const t = await answer(state, challenge, pow)
      assert.equal(t.outcome, 'bad-pow')
      const sent = t.actions.filter((a) => a.type === 'send').map((a) => (a as { message: ServerMessage }).message)
      assert.deepEqual(sent, [{ type: 'rejected', reason: 'wrong-answer' }])
      assert.ok(t.actions.some((a) => a.type === 'close' && a.code === 4401))
    }
  })

  it('re-challenges with an operator difficulty above the base, once at a time', async () => {
    const { state, challenge } = start(0)
    const verified = (await answer(state, challenge, undefined)).state
    const re = transition(verified, { type: 'rechallenge', powBits: 9 }, { ...ctx(0), now: 2000 })
    assert.deepEqual(challengeOf(re).pow, { alg: 'sha256', bits: 9 })
    const again = transition(re.state, { type: 'rechallenge' }, { ...ctx(0), now: 3000 })
    assert.deepEqual(again.actions, [], 'a second re-challenge must not replace the outstanding one')
    assert.equal(again.state.deadlineAt, re.state.deadlineAt)
  })
})

describe('gateway with WSDS_POW_BITS', () => {
  let s: TestServer
  before(async () => (s = await startTestServer({ powBits: 12, powMaxBits: 12 })))
  after(() => s.close())

  const challenge = async () => {
    const client = await openSocket(s.wsUrl, { origin: TEST_ORIGIN })
    client.send({ action: 'hello', v: 1 })
    await client.expect('connection')
    const c = await client.expect('challenge')
    return { client, c, result: await solve(c, testKeySet.keys, hostname) }
  }

  it('the SDK verifies, solving the work, and the page is admitted', async () => {
    const session = connect({ url: s.wsUrl, keys: testKeySet.keys, WebSocket: class extends WebSocket {
      constructor(url: string) {
        super(url, { origin: TEST_ORIGIN })
      }
    } as never, reconnect: false, evaluate: evaluateAt(hostname) })
    try {
      await session.ready
      // The SDK binds where crypto.subtle exists (Node has it): its own fetch signs the call.
      assert.equal((await session.fetch(`${s.url}/api/greeting`)).status, 200)
      assert.equal(s.gateway.stats.powIssued[12], 1)
      assert.equal(s.gateway.stats.powSolved, 1)
    } finally {
      session.close()
    }
  })

  it('sends pow with every challenge and rejects a wrong nonce with wrong-answer and 4401', async () => {
    const { client, c, result } = await challenge()
    assert.deepEqual(c.pow, { alg: 'sha256', bits: 12 })
    let nonce = 0
    while (hasLeadingZeroBits(nodeSha256(powInput(c.token, String(nonce))), 12)) nonce++
    client.send({ action: 'answer', token: c.token, result, pow: { nonce: String(nonce) } })
    assert.equal((await client.expect('rejected')).reason, 'wrong-answer')
    assert.equal((await client.closed).code, 4401)
  })

  it('rejects a nonce reused from another challenge', async () => {
    const first = await challenge()
    const work = (await solvePow(first.c.token, 12))!
    first.client.send({ action: 'answer', token: first.c.token, result: first.result, pow: work })
    await first.client.expect('verified')
    const second = await challenge()
    // Reuse is refused because the work is bound to the token; skip the 1-in-4096 case where
    // the old nonce happens to solve the new token too.
    if (hasLeadingZeroBits(nodeSha256(powInput(second.c.token, work.nonce)), 12)) return
    second.client.send({ action: 'answer', token: second.c.token, result: second.result, pow: work })
    assert.equal((await second.client.expect('rejected')).reason, 'wrong-answer')
    assert.equal((await second.client.closed).code, 4401)
    // And the token it was found for is spent: answering it again on its own connection fails.
    first.client.send({ action: 'answer', token: first.c.token, result: first.result, pow: work })
    assert.equal((await first.client.expect('rejected')).reason, 'bad-token')
    assert.ok(s.gateway.stats.outcomes['bad-pow'] >= 2)
  })

  it('exports difficulty issued and solve times in /metrics', async () => {
    const text = await (await fetch(s.metricsUrl)).text()
    assert.match(text, /wsds_pow_challenges_total\{[^}]*bits="12"[^}]*\} \d+/)
    assert.match(text, /wsds_pow_solve_seconds_count\{node="[^"]+"\} [1-9]/)
    assert.match(text, /wsds_outcomes_total\{[^}]*outcome="bad-pow"[^}]*\} [1-9]/)
  })
})

describe('gateway escalation (WSDS_POW_BITS=0, WSDS_POW_MAX_BITS=16)', () => {
  let s: TestServer
  before(async () => (s = await startTestServer({ powBits: 0, powMaxBits: 16 })))
  after(() => s.close())

  const firstChallenge = async () => {
    const client = await openSocket(s.wsUrl, { origin: TEST_ORIGIN })
    client.send({ action: 'hello', v: 1 })
    await client.expect('connection')
    return { client, c: await client.expect('challenge') }
  }

  it('asks a well-behaved address for no work, then for more after each doubling of its failures', async () => {
    const clean = await firstChallenge()
    assert.equal(clean.c.pow, undefined)
    clean.client.send({ action: 'answer', token: clean.c.token, result: 'wrong' })
    assert.equal((await clean.client.expect('rejected')).reason, 'wrong-answer')
    const after1 = await firstChallenge()
    assert.deepEqual(after1.c.pow, { alg: 'sha256', bits: 2 })
    // Two more failures (score about 3): +4 bits.
    after1.client.send({ action: 'answer', token: after1.c.token, result: 'wrong', pow: await solvePow(after1.c.token, 2) })
    await after1.client.expect('rejected')
    const third = await firstChallenge()
    third.client.send({ action: 'answer', token: third.c.token, result: 'wrong' })
    await third.client.expect('rejected')
    const after3 = await firstChallenge()
    assert.deepEqual(after3.c.pow, { alg: 'sha256', bits: 4 })
    await after3.client.close()
  })
})
