import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createKeyRing } from '../src/core/keyring.ts'
import { generateKeySet } from '../src/core/keyset.ts'
import { openConnection, transition, type ConnectionState, type LifecycleContext, type Transition } from '../src/core/lifecycle.ts'
import type { ChallengeMessage, ServerMessage } from '../src/core/protocol.ts'
import { createRandomPool } from '../src/core/random.ts'
import { loadConfig } from '../src/server/config.ts'
import { createEngineChecks } from '../src/engine/parse5.ts'
import { solve } from './helpers/ws-client.ts'

const random = createRandomPool()
const keySet = generateKeySet(random, { id: 'ks' })
const keyRing = createKeyRing([keySet])
const HOST = 'app.example.com'

function harness(extra: Partial<LifecycleContext> = {}) {
  let state: ConnectionState = openConnection({ connectionId: 'c1', origin: `https://${HOST}`, hostname: HOST, now: 0, timeoutMs: 10_000 }).state
  const ctx = (): LifecycleContext => ({ now: 1, keyRing, random, timeoutMs: 10_000, ...extra })
  const step = (text: unknown): Transition => {
    const t = transition(state, typeof text === 'string' ? { type: 'text', text } : { type: 'text', text: JSON.stringify(text) }, ctx())
    state = t.state
    return t
  }
  const rechallenge = (): Transition => {
    const t = transition(state, { type: 'rechallenge' }, ctx())
    state = t.state
    return t
  }
  return { step, rechallenge, state: () => state }
}

const sent = (t: Transition): ServerMessage[] => t.actions.flatMap((a) => (a.type === 'send' ? [a.message] : []))
const challengeOf = (t: Transition): ChallengeMessage => sent(t).find((m): m is ChallengeMessage => m.type === 'challenge')!

describe('form negotiation in the lifecycle', () => {
  it('re-challenges a verified connection in the form negotiated at hello', async () => {
    const h = harness()
    const first = challengeOf(h.step({ action: 'hello', v: 1, forms: ['program'] }))
    assert.equal(first.form, 'program')
    h.step({ action: 'answer', token: first.token, result: await solve(first, keySet.keys, HOST) })
    assert.equal(h.state().phase, 'verified')
    const again = challengeOf(h.rechallenge())
    assert.equal(again.form, 'program')
  })

  it('rejects with unsupported-form and close 4400 after sending the connection id when nothing offered is allowed', () => {
    const t = harness({ forms: ['program'] }).step({ action: 'hello', v: 1 })
    assert.deepEqual(
      sent(t).map((m) => m.type),
      ['connection', 'rejected'],
    )
    assert.deepEqual(t.actions.find((a) => a.type === 'close'), { type: 'close', code: 4400, reason: 'unsupported-form' })
    assert.equal(t.outcome, 'unsupported-form')
  })
})

describe('engine verdicts in the lifecycle', () => {
  for (const mode of ['monitor', 'enforce'] as const) {
    it(`reports the engine verdict with the outcome (${mode}): a page with a parser matches, one without is missing`, async () => {
      const engine = createEngineChecks(mode)
      const good = harness({ engine })
      const c1 = challengeOf(good.step({ action: 'hello', v: 1, forms: ['program'] }))
      const t1 = good.step({ action: 'answer', token: c1.token, result: await solve(c1, keySet.keys, HOST) })
      assert.equal(t1.outcome, 'verified')
      assert.equal(t1.engine, 'match')

      const bare = harness({ engine })
      const c2 = challengeOf(bare.step({ action: 'hello', v: 1, forms: ['code'] }))
      const t2 = bare.step({ action: 'answer', token: c2.token, result: await solve(c2, keySet.keys, HOST, { dom: false }) })
      assert.equal(t2.engine, 'missing')
      assert.equal(t2.outcome, mode === 'enforce' ? 'wrong-answer' : 'verified')
    })
  }

  it('draws no engine check and reports no verdict when engine checks are off', async () => {
    const h = harness()
    const c = challengeOf(h.step({ action: 'hello', v: 1, forms: ['program'] }))
    assert.equal((c as { program: { engine?: unknown } }).program.engine, undefined)
    const t = h.step({ action: 'answer', token: c.token, result: await solve(c, keySet.keys, HOST) })
    assert.equal(t.outcome, 'verified')
    assert.equal(t.engine, undefined)
  })
})

describe('WSDS_CHALLENGE_FORMS and WSDS_ENGINE_CHECKS', () => {
  it('default to code,program and monitor', () => {
    const c = loadConfig({})
    assert.deepEqual(c.challengeForms, ['code', 'program'])
    assert.equal(c.engineChecks, 'monitor')
  })

  it('accept a list in any case with spaces, and the flags', () => {
    assert.deepEqual(loadConfig({ WSDS_CHALLENGE_FORMS: ' Program , code,program' }).challengeForms, ['program', 'code'])
    const c = loadConfig({}, ['--challenge-forms', 'program', '--engine-checks=enforce'])
    assert.deepEqual(c.challengeForms, ['program'])
    assert.equal(c.engineChecks, 'enforce')
  })

  it('refuse unknown forms, an empty list and unknown modes with the variable named', () => {
    assert.throws(() => loadConfig({ WSDS_CHALLENGE_FORMS: 'code,wasm' }), /WSDS_CHALLENGE_FORMS.*unknown form "wasm"/)
    assert.throws(() => loadConfig({ WSDS_CHALLENGE_FORMS: ',' }), /WSDS_CHALLENGE_FORMS.*at least one form/)
    assert.throws(() => loadConfig({ WSDS_ENGINE_CHECKS: 'strict' }), /WSDS_ENGINE_CHECKS.*off, monitor or enforce/)
  })
})
