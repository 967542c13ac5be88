/**
 * Properties checked on random input (fast-check): message parsing, the connection
 * lifecycle, configuration parsing and request-target checking never throw on anything a
 * client or an operator can write, and never admit what they must not.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { WsdsError } from '../src/core/errors.ts'
import { createKeyRing } from '../src/core/keyring.ts'
import { DEFAULT_MAX_BAD_FRAMES, openConnection, transition, type ConnectionState, type LifecycleEvent } from '../src/core/lifecycle.ts'
import { parseClientMessage, type CodeChallengeMessage } from '../src/core/protocol.ts'
import { createRandomPool } from '../src/core/random.ts'
import { checkTarget } from '../src/core/target.ts'
import { SETTINGS, loadConfig } from '../src/server/config.ts'
import { olderKeySet, testKeySet } from './helpers/server.ts'

const RUNS = Number(process.env.WSDS_FUZZ_RUNS ?? 300)

/** Strings that are almost protocol messages: the cases a parser gets wrong. */
const nearMessage = fc.oneof(
  fc.string(),
  fc.json(),
  fc.record(
    {
      action: fc.oneof(fc.constantFrom('hello', 'answer', 'ping', 'HELLO', '', '__proto__', 'constructor'), fc.anything()),
      v: fc.oneof(fc.constant(1), fc.integer(), fc.double(), fc.string(), fc.constant(null)),
      keySet: fc.oneof(fc.string(), fc.anything()),
      token: fc.oneof(fc.string(), fc.anything()),
      result: fc.anything(),
      forms: fc.anything(),
      bind: fc.anything(),
      pow: fc.anything(),
    },
    { requiredKeys: [] },
  ).map((o) => JSON.stringify(o)),
)

describe('parseClientMessage on random input', () => {
  it('never throws, and whatever it accepts is a known action with the fields that action needs', () => {
    fc.assert(
      fc.property(nearMessage, (text) => {
        const parsed = parseClientMessage(text)
        if (!parsed.ok) {
          assert.equal(typeof parsed.error, 'string')
          return
        }
        const m = parsed.message
        assert.ok(['hello', 'answer', 'ping'].includes(m.action))
        if (m.action === 'hello') assert.ok(Number.isInteger(m.v))
        if (m.action === 'answer') assert.equal(typeof m.token, 'string')
      }),
      { numRuns: RUNS * 5 },
    )
  })
})

// ---- lifecycle ---------------------------------------------------------------------------

const random = createRandomPool()
const keyRing = createKeyRing([testKeySet, olderKeySet])
const HOST = 'app.wsds.test'
const TIMEOUT = 10_000
const T0 = 1_700_000_000_000

function solveCode(code: string, hostname: string): unknown {
  const fn = new Function('location', `return (${code})`)({ hostname }) as (a: { keys: readonly string[] }) => unknown
  return fn({ keys: testKeySet.keys })
}

/** What the random client does next; `answer-right` computes the right answer when it can. */
type Step =
  | { kind: 'hello'; keySet: string | undefined; v: number }
  | { kind: 'answer-right' }
  | { kind: 'answer-wrong-result' }
  | { kind: 'answer-random'; token: string; result: unknown }
  | { kind: 'answer-wrong-host' }
  | { kind: 'ping' }
  | { kind: 'garbage'; text: string }
  | { kind: 'binary' }
  | { kind: 'deadline' }
  | { kind: 'rechallenge' }

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('hello' as const), keySet: fc.constantFrom(undefined, testKeySet.id, olderKeySet.id, 'nope'), v: fc.constantFrom(1, 1, 1, 2) }),
  fc.constant({ kind: 'answer-right' as const }),
  fc.constant({ kind: 'answer-right' as const }),
  fc.constant({ kind: 'answer-wrong-result' as const }),
  fc.record({ kind: fc.constant('answer-random' as const), token: fc.string(), result: fc.jsonValue() }),
  fc.constant({ kind: 'answer-wrong-host' as const }),
  fc.constant({ kind: 'ping' as const }),
  fc.record({ kind: fc.constant('garbage' as const), text: nearMessage }),
  fc.constant({ kind: 'binary' as const }),
  fc.constant({ kind: 'deadline' as const }),
  fc.constant({ kind: 'rechallenge' as const }),
)

describe('the lifecycle on random event sequences', () => {
  it('keeps a consistent state and verifies only on the right answer, before the deadline', () => {
    // Counted so the property is known to reach the interesting states at all.
    const reached = { verified: 0, timeout: 0, rechallenged: 0 }
    fc.assert(
      fc.property(fc.boolean(), fc.array(fc.tuple(step, fc.nat({ max: 6_000 })), { maxLength: 25 }), (honestStart, rest) => {
        // Half the runs start as an honest page would, so verified connections (and their
        // re-challenges) get their share of random events too.
        const steps: Array<[Step, number]> = honestStart ? [[{ kind: 'hello', keySet: undefined, v: 1 }, 0], [{ kind: 'answer-right' }, 10], ...rest] : rest
        let now = T0
        let state: ConnectionState = openConnection({ connectionId: 'c'.repeat(22), origin: `http://${HOST}`, hostname: HOST, now, timeoutMs: TIMEOUT }).state
        /** The code of the challenge outstanding, as the client last received it. */
        let code: string | null = null
        let verifiedOnce = false
        for (const [s, dt] of steps) {
          now += dt
          let event: LifecycleEvent
          let right = false
          switch (s.kind) {
            case 'hello':
              event = { type: 'text', text: JSON.stringify({ action: 'hello', v: s.v, ...(s.keySet === undefined ? {} : { keySet: s.keySet }) }) }
              break
            case 'answer-right':
            case 'answer-wrong-result':
            case 'answer-wrong-host': {
              const token = state.outstanding?.token ?? 'none'
              let result: unknown = 'x'
              if (code !== null && s.kind !== 'answer-wrong-result') result = solveCode(code, s.kind === 'answer-right' ? HOST : 'evil.wsds.test')
              right = s.kind === 'answer-right' && code !== null && state.outstanding !== null && state.keySetId === testKeySet.id
              event = { type: 'text', text: JSON.stringify({ action: 'answer', token, result }) }
              break
            }
            case 'answer-random':
              event = { type: 'text', text: JSON.stringify({ action: 'answer', token: s.token, result: s.result }) }
              break
            case 'ping':
              event = { type: 'text', text: '{"action":"ping"}' }
              break
            case 'garbage':
              event = { type: 'text', text: s.text }
              break
            case 'binary':
              event = { type: 'binary' }
              break
            case 'deadline':
              event = { type: 'deadline' }
              break
            case 'rechallenge':
              event = { type: 'rechallenge' }
              break
          }
          const before = state
          const t = transition(state, event, { now, keyRing, random, timeoutMs: TIMEOUT })
          state = t.state
          for (const a of t.actions) if (a.type === 'send' && a.message.type === 'challenge') code = (a.message as CodeChallengeMessage).code
          if (before.phase === 'closed') {
            assert.deepEqual(t.actions, [], 'a closed connection does nothing')
            assert.equal(state, before)
          }
          if (t.outcome === 'verified') {
            assert.ok(right, `verified on ${s.kind}`)
            assert.ok(before.deadlineAt !== null && now < before.deadlineAt, 'verified at or after the deadline')
            assert.ok(t.actions.some((a) => a.type === 'persist-verified'))
            verifiedOnce = true
            reached.verified++
          }
          if (t.outcome === 'timeout') reached.timeout++
          if (event.type === 'rechallenge' && t.actions.length > 0) reached.rechallenged++
          if (state.phase === 'verified') assert.ok(verifiedOnce, 'verified without a verified outcome')
          // Consistency of the state itself.
          if (state.phase === 'closed') {
            assert.equal(state.outstanding, null)
            assert.equal(state.deadlineAt, null)
          }
          if (state.phase === 'pending') assert.notEqual(state.deadlineAt, null, 'a pending connection always has a deadline')
          if (state.outstanding !== null) assert.notEqual(state.deadlineAt, null, 'an outstanding challenge always has a deadline')
          assert.ok(state.badFrames <= DEFAULT_MAX_BAD_FRAMES + 1)
          // Every close comes with a code from PROTOCOL.md's table.
          for (const a of t.actions) if (a.type === 'close') assert.ok([1000, 1009, 4400, 4401, 4408, 4429].includes(a.code), `close ${a.code}`)
          // Nothing is sent at or after the deadline but a rejection.
          if (before.deadlineAt !== null && now >= before.deadlineAt && before.phase !== 'closed' && event.type !== 'binary') {
            const sent = t.actions.flatMap((a) => (a.type === 'send' ? [a.message.type] : []))
            if (event.type !== 'rechallenge') assert.ok(sent.length === 0 || sent.includes('rejected'), `sent ${sent.join(',')} after the deadline`)
          }
        }
      }),
      { numRuns: RUNS },
    )
    assert.ok(reached.verified > 0 && reached.timeout > 0 && reached.rechallenged > 0, JSON.stringify(reached))
  })
})

// ---- configuration -----------------------------------------------------------------------

const settingValue = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.constantFrom('0', '1', '-1', '65536', '1e3', ' 80 ', 'on', 'off', 'maybe', 'memory', 'redis://', 'dynamodb://t', 'http://x', '/metrics', '/api', '/wsds', '777', 'enforce', 'monitor', ''),
)
const envNames = SETTINGS.map((s) => s.env).filter((n) => n !== 'WSDS_KEYS_FILE')

describe('loadConfig on random environments', () => {
  it('either returns a configuration within the documented ranges or throws ERR_CONFIG naming a setting', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...envNames), settingValue, { maxKeys: 8 }), (env) => {
        let config
        try {
          config = loadConfig(env)
        } catch (err) {
          assert.ok(err instanceof WsdsError, `not a WsdsError: ${String(err)}`)
          assert.equal(err.code, 'ERR_CONFIG')
          assert.ok(SETTINGS.some((s) => err.message.includes(s.env)), `message names no setting: ${err.message}`)
          return
        }
        assert.ok(Number.isInteger(config.port) && config.port >= 0 && config.port <= 65535)
        assert.ok(config.allowedOrigins.length > 0)
        assert.ok(config.challengeTimeoutMs >= 100)
        assert.ok(config.maxPayloadBytes >= 64)
        assert.ok(config.rateLimit === null || config.rateLimit >= 1)
        assert.ok(['enforce', 'monitor'].includes(config.mode))
        assert.ok(config.metricsPath.startsWith('/'))
      }),
      { numRuns: RUNS * 3 },
    )
  })
})

// ---- request targets ---------------------------------------------------------------------

const segment = fc.oneof(
  fc.constantFrom('.', '..', '%2e', '%2E%2e', '.%2e', '', 'a', 'api', 'greeting', '%2f', '%5C', '\\', '..%2f', 'a%20b', '%00', '%', '%zz', 'é', 'x#y', 'a;b', '~u'),
  fc.stringMatching(/^[A-Za-z0-9._~%-]{0,8}$/),
)
const target = fc.oneof(
  fc.string(),
  fc.tuple(fc.array(segment, { maxLength: 6 }), fc.option(fc.string({ maxLength: 10 }))).map(([segs, q]) => '/' + segs.join('/') + (q === null ? '' : '?' + q)),
)

describe('checkTarget on random targets', () => {
  it('never throws; what it accepts has no dot segment, encoded or raw separator, or control, and resolves to the same segments as a URL parser sees', () => {
    fc.assert(
      fc.property(target, (t) => {
        const r = checkTarget(t)
        if (!r.ok) return
        assert.equal(r.query === '' ? r.path === t || r.path + '?' === t : r.path + '?' + r.query === t, true)
        const segments = r.path.split('/').slice(1)
        for (const s of segments) {
          const decoded = s.replace(/%2e/gi, '.')
          assert.ok(decoded !== '.' && decoded !== '..', `dot segment in ${t}`)
          assert.ok(!/%2f|%5c|\\/i.test(s), `separator in ${t}`)
        }
        assert.ok(!/[\u0000-\u0020\u007f-\uffff#]/.test(t), `bad character in ${JSON.stringify(t)}`)
        // The WHATWG parser (what browsers, Hono, undici use) sees the same path segments.
        const parsed = new URL(t, 'http://h.test').pathname
        assert.equal(parsed.split('/').length, r.path.split('/').length, `${t} -> ${parsed}`)
      }),
      { numRuns: RUNS * 10 },
    )
  })

  it('refuses every target with a dot segment in its path, however it is spelled', () => {
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 4 }), fc.constantFrom('.', '..', '%2e', '%2E%2E', '.%2E', '%2e.'), fc.array(segment, { maxLength: 4 }), (a, dot, b) => {
        const t = '/' + [...a, dot, ...b].join('/')
        assert.equal(checkTarget(t).ok, false, t)
      }),
      { numRuns: RUNS * 3 },
    )
  })
})
