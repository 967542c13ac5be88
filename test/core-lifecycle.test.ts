import assert from 'node:assert/strict'
import { beforeEach, describe, it } from 'node:test'
import { createKeyRing, type KeyRing } from '../src/core/keyring.ts'
import { generateKeySet, type KeySet } from '../src/core/keyset.ts'
import {
  DEFAULT_MAX_BAD_FRAMES,
  newId,
  openConnection,
  transition,
  type Action,
  type ConnectionState,
  type LifecycleContext,
  type LifecycleEvent,
  type Transition,
} from '../src/core/lifecycle.ts'
import type { ChallengeMessage, CodeChallengeMessage, ServerMessage } from '../src/core/protocol.ts'
import { createRandomPool } from '../src/core/random.ts'

const random = createRandomPool()
const currentSet = generateKeySet(random, { id: 'ks-current' })
const olderSet = generateKeySet(random, { id: 'ks-older' })
const keyRing: KeyRing = createKeyRing([currentSet, olderSet])
const setsById = new Map<string, KeySet>([
  [currentSet.id, currentSet],
  [olderSet.id, olderSet],
])

const HOST = 'app.example.com'
const TIMEOUT = 10_000
const T0 = 1_700_000_000_000

/** A connection driven by a fake clock; `at` moves time, `send` feeds events. */
class Harness {
  now = T0
  state: ConnectionState
  constructor(
    readonly ctxExtra: Partial<LifecycleContext> = {},
    hostname = HOST,
  ) {
    const t = openConnection({ connectionId: 'conn-0123456789abcdef', origin: `https://${hostname}`, hostname, now: this.now, timeoutMs: TIMEOUT })
    this.state = t.state
    this.opened = t
  }
  opened: Transition
  ctx(): LifecycleContext {
    return { now: this.now, keyRing, random, timeoutMs: TIMEOUT, ...this.ctxExtra }
  }
  event(event: LifecycleEvent): Transition {
    const t = transition(this.state, event, this.ctx())
    this.state = t.state
    return t
  }
  text(value: unknown): Transition {
    return this.event({ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value) })
  }
  hello(extra: Record<string, unknown> = {}): Transition {
    return this.text({ action: 'hello', v: 1, ...extra })
  }
}

function sent(t: Transition): ServerMessage[] {
  return t.actions.flatMap((a) => (a.type === 'send' ? [a.message] : []))
}

function challengeOf(t: Transition): ChallengeMessage {
  const c = sent(t).find((m): m is ChallengeMessage => m.type === 'challenge')
  assert.ok(c, `expected a challenge in ${JSON.stringify(t.actions)}`)
  return c
}

/** Computes the answer the way a page on `hostname` with `keys` would. */
function solve(challenge: ChallengeMessage, keys: readonly string[], hostname = HOST): unknown {
  const fn = new Function('location', 'return (' + (challenge as CodeChallengeMessage).code + ')')({ hostname }) as (arg: { keys: readonly string[] }) => unknown
  return fn({ keys })
}

function answer(h: Harness, challenge: ChallengeMessage, result: unknown, token = challenge.token): Transition {
  return h.text({ action: 'answer', token, result })
}

function assertRejected(t: Transition, reason: string, code: number): void {
  const types = t.actions.map((a) => a.type)
  const rejected = t.actions.findIndex((a) => a.type === 'send' && a.message.type === 'rejected')
  const close = t.actions.findIndex((a) => a.type === 'close')
  assert.ok(rejected !== -1, `no rejected frame in ${JSON.stringify(t.actions)}`)
  assert.deepEqual((t.actions[rejected] as Extract<Action, { type: 'send' }>).message, { type: 'rejected', reason })
  assert.ok(close > rejected, `close must follow the rejected frame: ${types.join(',')}`)
  assert.equal((t.actions[close] as Extract<Action, { type: 'close' }>).code, code)
  assert.ok(t.actions.some((a) => a.type === 'timer' && a.at === null), 'the deadline timer is cleared')
  assert.ok(!t.actions.some((a) => a.type === 'persist-verified'))
  assert.equal(t.state.phase, 'closed')
  assert.equal(t.state.outstanding, null)
  assert.equal(t.outcome, reason)
}

function assertBadMessage(t: Transition): void {
  assert.deepEqual(
    t.actions.map((a) => (a.type === 'send' ? a.message.type + ':' + ('code' in a.message ? a.message.code : '') : a.type)),
    ['error:bad-message'],
  )
  assert.notEqual(t.state.phase, 'closed')
}

/** Runs hello and a correct answer; returns the harness in phase verified. */
function verified(h = new Harness()): Harness {
  const c = challengeOf(h.hello())
  const t = answer(h, c, solve(c, currentSet.keys))
  assert.equal(t.state.phase, 'verified')
  return h
}

describe('openConnection', () => {
  it('starts pending and arms the deadline at now + timeout', () => {
    const h = new Harness()
    assert.equal(h.state.phase, 'pending')
    assert.equal(h.state.deadlineAt, T0 + TIMEOUT)
    assert.equal(h.state.helloSeen, false)
    assert.equal(h.state.outstanding, null)
    assert.equal(h.state.hostname, HOST)
    assert.deepEqual(h.opened.actions, [{ type: 'timer', at: T0 + TIMEOUT }])
  })

  it('issues 128-bit URL-safe ids (22 base64url characters)', () => {
    const ids = new Set<string>()
    for (let i = 0; i < 1000; i++) {
      const id = newId(random)
      assert.match(id, /^[A-Za-z0-9_-]{22}$/)
      ids.add(id)
    }
    assert.equal(ids.size, 1000)
  })
})

describe('hello', () => {
  it('sends connection then challenge, then arms the timer, counting expiresInMs from the upgrade deadline', () => {
    const h = new Harness()
    h.now = T0 + 2_500
    const t = h.hello()
    assert.deepEqual(
      t.actions.map((a) => (a.type === 'send' ? a.message.type : a.type)),
      ['connection', 'challenge', 'timer'],
    )
    assert.deepEqual(sent(t)[0], { type: 'connection', connectionId: 'conn-0123456789abcdef' })
    const c = challengeOf(t)
    assert.equal(c.expiresInMs, TIMEOUT - 2_500)
    assert.equal(typeof c.token, 'string')
    assert.ok((c as CodeChallengeMessage).code.startsWith('function('))
    assert.deepEqual(t.actions[2], { type: 'timer', at: T0 + TIMEOUT })
    assert.equal(t.state.phase, 'pending')
    assert.equal(t.state.helloSeen, true)
    assert.equal(t.state.keySetId, currentSet.id)
    assert.equal(t.state.outstanding?.token, c.token)
    assert.equal(t.state.deadlineAt, T0 + TIMEOUT)
  })

  it('never puts the expected answer on the wire', () => {
    const h = new Harness()
    const t = h.hello()
    const expected = h.state.outstanding?.expected
    assert.ok(expected)
    assert.ok(!JSON.stringify(t.actions).includes(expected))
  })

  it('uses the current key set when hello names none', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    assert.equal(h.state.keySetId, currentSet.id)
    assert.equal(answer(h, c, solve(c, currentSet.keys)).state.phase, 'verified')
  })

  it('challenges with an older accepted key set when hello names it', () => {
    const h = new Harness()
    const c = challengeOf(h.hello({ keySet: olderSet.id }))
    assert.equal(h.state.keySetId, olderSet.id)
    // Computed with the current set's keys the answer is wrong: the challenge really is over the older set.
    const probe = new Harness()
    const pc = challengeOf(probe.hello({ keySet: olderSet.id }))
    assertRejected(answer(probe, pc, solve(pc, currentSet.keys)), 'wrong-answer', 4401)
    assert.equal(answer(h, c, solve(c, setsById.get(olderSet.id)!.keys)).state.phase, 'verified')
  })

  it('sends connection then rejected stale-keyset and closes 4401 for a key set it does not accept', () => {
    const h = new Harness()
    const t = h.hello({ keySet: 'ks-retired' })
    assert.deepEqual(sent(t)[0], { type: 'connection', connectionId: 'conn-0123456789abcdef' })
    assert.ok(!sent(t).some((m) => m.type === 'challenge'))
    assertRejected(t, 'stale-keyset', 4401)
  })

  it('rejects hello v=2 with unsupported-version and closes 4400', () => {
    const h = new Harness()
    const t = h.hello({ v: 2 })
    assertRejected(t, 'unsupported-version', 4400)
    assert.ok(!sent(t).some((m) => m.type === 'challenge'))
  })

  it("answers hello with v '1' (a string) with bad-message and stays usable", () => {
    const h = new Harness()
    assertBadMessage(h.hello({ v: '1' }))
    assert.equal(h.state.helloSeen, false)
    assert.equal(h.state.badFrames, 1)
    const c = challengeOf(h.hello())
    assert.equal(answer(h, c, solve(c, currentSet.keys)).state.phase, 'verified')
  })

  it('answers a hello without v with bad-message', () => {
    const h = new Harness()
    assertBadMessage(h.text({ action: 'hello' }))
  })

  it('answers a second hello with bad-message and keeps the outstanding challenge', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    assertBadMessage(h.hello())
    assert.equal(h.state.outstanding?.token, c.token)
    assert.equal(answer(h, c, solve(c, currentSet.keys)).state.phase, 'verified')
  })

  it('answers a second hello after verification with bad-message, not a new challenge', () => {
    const h = verified()
    assertBadMessage(h.hello())
    assert.equal(h.state.phase, 'verified')
  })

  it('rejects a hello that arrives at the deadline with timeout (after connection)', () => {
    const h = new Harness()
    h.now = T0 + TIMEOUT
    const t = h.hello()
    assert.ok(!sent(t).some((m) => m.type === 'challenge'))
    assertRejected(t, 'timeout', 4408)
  })
})

describe('answer', () => {
  it('verifies a correct answer: timer cleared, persist-verified before the verified frame', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    h.now = T0 + 1_000
    const t = answer(h, c, solve(c, currentSet.keys))
    const types = t.actions.map((a) => (a.type === 'send' ? a.message.type : a.type))
    assert.deepEqual(types, ['timer', 'persist-verified', 'verified'])
    assert.deepEqual(t.actions[0], { type: 'timer', at: null })
    assert.deepEqual(sent(t)[0], { type: 'verified', connectionId: 'conn-0123456789abcdef' })
    assert.equal(t.state.phase, 'verified')
    assert.equal(t.state.outstanding, null)
    assert.equal(t.state.deadlineAt, null)
    assert.equal(t.outcome, 'verified')
  })

  it('rejects a wrong answer with wrong-answer and closes 4401', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    const right = solve(c, currentSet.keys) as string
    const wrong = right.slice(0, -1) + (right.endsWith('0') ? '1' : '0')
    assertRejected(answer(h, c, wrong), 'wrong-answer', 4401)
  })

  it('rejects a non-string result with wrong-answer', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    assertRejected(answer(h, c, 42), 'wrong-answer', 4401)
  })

  it('rejects an answer computed with another key set with wrong-answer', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    assertRejected(answer(h, c, solve(c, olderSet.keys)), 'wrong-answer', 4401)
  })

  it('rejects an answer computed on another hostname with bad-domain and closes 4401', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    assertRejected(answer(h, c, solve(c, currentSet.keys, 'evil.example.net')), 'bad-domain', 4401)
  })

  it('rejects an answer with another token with bad-token and closes 4401', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    assertRejected(answer(h, c, solve(c, currentSet.keys), newId(random)), 'bad-token', 4401)
  })

  it("rejects an answer carrying another connection's token with bad-token", () => {
    const other = new Harness()
    const oc = challengeOf(other.hello())
    const h = new Harness()
    const c = challengeOf(h.hello())
    assertRejected(answer(h, c, solve(c, currentSet.keys), oc.token), 'bad-token', 4401)
    // The other connection's token is not spent by this misuse.
    assert.equal(answer(other, oc, solve(oc, currentSet.keys)).state.phase, 'verified')
  })

  it('rejects an answer before hello (no outstanding challenge) with bad-token', () => {
    const h = new Harness()
    assertRejected(h.text({ action: 'answer', token: 'anything', result: 'x' }), 'bad-token', 4401)
  })

  it('rejects a second answer after verification with bad-token, even with the spent token and right result', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    const result = solve(c, currentSet.keys)
    assert.equal(answer(h, c, result).state.phase, 'verified')
    assertRejected(answer(h, c, result), 'bad-token', 4401)
  })

  it('checks the token before the result: a right result under a wrong token is bad-token', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    assertRejected(answer(h, c, solve(c, currentSet.keys, 'evil.example'), c.token + 'x'), 'bad-token', 4401)
  })
})

describe('deadline', () => {
  it('ignores a deadline event that fires before the deadline', () => {
    const h = new Harness()
    challengeOf(h.hello())
    h.now = T0 + TIMEOUT - 1
    const t = h.event({ type: 'deadline' })
    assert.deepEqual(t.actions, [])
    assert.equal(t.state.phase, 'pending')
    assert.notEqual(t.state.outstanding, null)
  })

  it('rejects with timeout and closes 4408 at the deadline', () => {
    const h = new Harness()
    challengeOf(h.hello())
    h.now = T0 + TIMEOUT
    assertRejected(h.event({ type: 'deadline' }), 'timeout', 4408)
  })

  it('rejects with timeout after the deadline', () => {
    const h = new Harness()
    challengeOf(h.hello())
    h.now = T0 + TIMEOUT + 5_000
    assertRejected(h.event({ type: 'deadline' }), 'timeout', 4408)
  })

  it('rejects with timeout when no hello was ever sent', () => {
    const h = new Harness()
    h.now = T0 + TIMEOUT
    assertRejected(h.event({ type: 'deadline' }), 'timeout', 4408)
  })

  it('ignores the deadline once verified with nothing outstanding', () => {
    const h = verified()
    h.now = T0 + TIMEOUT * 10
    const t = h.event({ type: 'deadline' })
    assert.deepEqual(t.actions, [])
    assert.equal(t.state.phase, 'verified')
  })

  it('rejects a late but correct answer once the deadline event has fired', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    h.now = T0 + TIMEOUT
    h.event({ type: 'deadline' })
    assert.deepEqual(answer(h, c, solve(c, currentSet.keys)).actions, [])
    assert.equal(h.state.phase, 'closed')
  })
})

describe('bad frames', () => {
  it('survives 3 bad frames and still verifies', () => {
    const h = new Harness()
    for (const text of ['nope', '[]', '{"action":"fly"}']) assertBadMessage(h.text(text))
    assert.equal(h.state.badFrames, 3)
    const c = challengeOf(h.hello())
    assert.equal(answer(h, c, solve(c, currentSet.keys)).state.phase, 'verified')
  })

  it(`survives ${DEFAULT_MAX_BAD_FRAMES} bad frames and closes 4400 on the ${DEFAULT_MAX_BAD_FRAMES + 1}th`, () => {
    const h = new Harness()
    for (let i = 0; i < DEFAULT_MAX_BAD_FRAMES; i++) assertBadMessage(h.text('garbage'))
    const t = h.text('garbage')
    assert.deepEqual(sent(t)[0]?.type, 'error')
    const close = t.actions.find((a) => a.type === 'close')
    assert.equal(close?.type === 'close' ? close.code : undefined, 4400)
    assert.ok(t.actions.some((a) => a.type === 'timer' && a.at === null))
    assert.equal(t.state.phase, 'closed')
    assert.equal(t.outcome, 'too-many-bad-frames')
  })

  it('honours a lower maxBadFrames (never below the protocol minimum of 3 in use)', () => {
    const h = new Harness({ maxBadFrames: 3 })
    for (let i = 0; i < 3; i++) assertBadMessage(h.text('garbage'))
    assert.equal(h.text('garbage').state.phase, 'closed')
  })

  it('answers a binary frame with bad-message and counts it', () => {
    const h = new Harness()
    assertBadMessage(h.event({ type: 'binary' }))
    assert.equal(h.state.badFrames, 1)
  })

  it('does not count pings or valid frames as bad', () => {
    const h = new Harness()
    for (let i = 0; i < 50; i++) h.text({ action: 'ping' })
    assert.equal(h.state.badFrames, 0)
    assert.equal(h.state.phase, 'pending')
  })
})

describe('after close', () => {
  it('produces no actions for any event once closed', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    answer(h, c, 'wrong')
    assert.equal(h.state.phase, 'closed')
    const closed = h.state
    const events: LifecycleEvent[] = [
      { type: 'text', text: '{"action":"ping"}' },
      { type: 'text', text: '{"action":"hello","v":1}' },
      { type: 'text', text: JSON.stringify({ action: 'answer', token: c.token, result: solve(c, currentSet.keys) }) },
      { type: 'text', text: 'garbage' },
      { type: 'binary' },
      { type: 'deadline' },
      { type: 'rechallenge' },
    ]
    h.now = T0 + TIMEOUT * 2
    for (const event of events) {
      const t = h.event(event)
      assert.deepEqual(t.actions, [], event.type)
      assert.equal(t.state, closed)
    }
  })
})

describe('ping', () => {
  it('answers ping with pong before hello', () => {
    const h = new Harness()
    assert.deepEqual(h.text({ action: 'ping' }).actions, [{ type: 'send', message: { type: 'pong' } }])
  })

  it('answers ping with pong while a challenge is outstanding, leaving it outstanding', () => {
    const h = new Harness()
    const c = challengeOf(h.hello())
    assert.deepEqual(h.text({ action: 'ping' }).actions, [{ type: 'send', message: { type: 'pong' } }])
    assert.equal(h.state.outstanding?.token, c.token)
  })

  it('answers ping with pong once verified', () => {
    const h = verified()
    assert.deepEqual(h.text({ action: 'ping' }).actions, [{ type: 'send', message: { type: 'pong' } }])
    assert.equal(h.state.phase, 'verified')
  })
})

describe('rechallenge', () => {
  let h: Harness
  beforeEach(() => {
    h = verified()
    h.now = T0 + 60_000
  })

  it('sends a new challenge on a verified connection with a fresh deadline; phase stays verified', () => {
    const t = h.event({ type: 'rechallenge' })
    const c = challengeOf(t)
    assert.equal(c.expiresInMs, TIMEOUT)
    assert.ok(t.actions.some((a) => a.type === 'timer' && a.at === T0 + 60_000 + TIMEOUT))
    assert.ok(!sent(t).some((m) => m.type === 'connection'))
    assert.equal(t.state.phase, 'verified')
    assert.equal(t.state.deadlineAt, T0 + 60_000 + TIMEOUT)
  })

  it('stays verified until the new deadline and verifies again on a correct answer', () => {
    const c = challengeOf(h.event({ type: 'rechallenge' }))
    h.now += TIMEOUT - 1
    assert.deepEqual(h.event({ type: 'deadline' }).actions, [])
    assert.equal(h.state.phase, 'verified')
    const t = answer(h, c, solve(c, currentSet.keys))
    assert.equal(t.state.phase, 'verified')
    assert.ok(t.actions.some((a) => a.type === 'persist-verified'))
    assert.ok(sent(t).some((m) => m.type === 'verified'))
    assert.equal(t.state.deadlineAt, null)
  })

  it('uses the key set named in hello for the re-challenge', () => {
    const g = new Harness()
    const first = challengeOf(g.hello({ keySet: olderSet.id }))
    answer(g, first, solve(first, olderSet.keys))
    const c = challengeOf(g.event({ type: 'rechallenge' }))
    assert.equal(answer(g, c, solve(c, olderSet.keys)).state.phase, 'verified')
  })

  it('revokes with timeout (4408) when the re-challenge deadline passes', () => {
    challengeOf(h.event({ type: 'rechallenge' }))
    h.now += TIMEOUT
    assertRejected(h.event({ type: 'deadline' }), 'timeout', 4408)
  })

  it('revokes with 4401 on a wrong answer to the re-challenge', () => {
    const c = challengeOf(h.event({ type: 'rechallenge' }))
    assertRejected(answer(h, c, 'nope'), 'wrong-answer', 4401)
  })

  it('does nothing on a pending connection', () => {
    const p = new Harness()
    assert.deepEqual(p.event({ type: 'rechallenge' }).actions, [])
    const c = challengeOf(p.hello())
    const t = p.event({ type: 'rechallenge' })
    assert.deepEqual(t.actions, [])
    assert.equal(t.state.outstanding?.token, c.token)
  })
})
