/**
 * The per-connection state machine (PROTOCOL.md, Sequence 3-7): pending -> verified, or
 * rejected / timed out -> closed. Pure: it returns what to do and the transport does it, so
 * the ws gateway, the Lambda handlers and the tests all run the same rules.
 */
import { parseBindOffer, type Binder, type BindingMode } from './binding.ts'
import { checkAnswer, createChallenge } from './challenge.ts'
import type { EngineChecks, EngineVerdict } from './engine-check.ts'
import { constantTimeEqual, toBase64Url } from './encoding.ts'
import { verifyPow, type Sha256 } from './pow.ts'
import type { KeyRing } from './keyring.ts'
import {
  CloseCode,
  PROTOCOL_VERSION,
  closeCodeFor,
  parseClientMessage,
  type ChallengeForm,
  type RejectReason,
  type ServerMessage,
} from './protocol.ts'
import type { RandomSource } from './random.ts'

export type Phase = 'pending' | 'verified' | 'closed'

export interface OutstandingChallenge {
  token: string
  expected: string
  /** Proof-of-work difficulty the challenge asked for (docs/protocol.md); absent or 0 = none. */
  powBits?: number
}

export interface ConnectionState {
  readonly connectionId: string
  readonly origin: string
  /** Hostname of the Origin: the domain the answer must prove. */
  readonly hostname: string
  readonly createdAt: number
  readonly phase: Phase
  readonly helloSeen: boolean
  /** Key set named in hello (resolved), used for re-challenges too. */
  readonly keySetId: string | null
  /** Challenge form negotiated in hello (PROTOCOL.md, "Challenge forms"); absent: 'code'. */
  readonly form?: ChallengeForm
  readonly outstanding: OutstandingChallenge | null
  /** When the connection fails if nothing changes; null while verified with nothing outstanding. */
  readonly deadlineAt: number | null
  readonly badFrames: number
  /**
   * Request binding (PROTOCOL.md, "Request binding"): the client's public key from hello
   * (base64url), then, once verified, the derived keys. Strings, so a Lambda can keep the state
   * as JSON. Absent: unbound.
   */
  readonly bind?: { clientKey: string; serverKey?: string; requestKey?: string }
}

export type LifecycleEvent =
  | { type: 'text'; text: string }
  /** A binary frame: not part of the protocol. */
  | { type: 'binary' }
  /** The deadline timer fired. */
  | { type: 'deadline' }
  /**
   * The gateway wants a fresh challenge on a verified connection (periodic or an operator's).
   * `powBits` raises the proof of work of that one challenge above the context's.
   * Ignored while a challenge is outstanding: a second one must not move the deadline.
   */
  | { type: 'rechallenge'; powBits?: number }

export type Action =
  | { type: 'send'; message: ServerMessage }
  /** Mark the record verified; the transport completes this before the actions after it. */
  | { type: 'persist-verified'; bindKey?: string }
  | { type: 'close'; code: number; reason: string }
  /** (Re)arm the deadline timer for epoch ms `at`, or clear it (null). */
  | { type: 'timer'; at: number | null }

export interface Transition {
  state: ConnectionState
  actions: Action[]
  /** Set when the connection ends, for logs and metrics. */
  outcome?: RejectReason | 'verified' | 'too-many-bad-frames' | 'bad-pow'
  /** An answer carried valid proof of work: its difficulty and the solve time the client reported. */
  pow?: { bits: number; solveMs: number | null }
  /** Engine-check verdict of the answer just judged, when its challenge drew one (metrics). */
  engine?: EngineVerdict
}

export interface LifecycleContext {
  now: number
  keyRing: KeyRing
  random: RandomSource
  /** Challenge deadline, ms (PROTOCOL.md default 10000). */
  timeoutMs: number
  /** Bad frames tolerated before close 4400 (PROTOCOL.md: at least 3, at most 10). */
  maxBadFrames?: number
  /**
   * Proof-of-work difficulty for a challenge issued now, bits (default 0 = none). Needs
   * `sha256`: without a hash to check the work, no work is asked for.
   */
  powBits?: number
  /** SHA-256, injected so core stays pure; the gateway passes node:crypto's. */
  sha256?: Sha256
  /** WSDS_BINDING (default 'optional'). */
  binding?: BindingMode
  /** Derives a bound connection's keys; without one, `bind` is ignored as under 'off'. */
  binder?: Binder
  /** Forms this deployment allows (WSDS_CHALLENGE_FORMS; default DEFAULT_FORMS). */
  forms?: readonly ChallengeForm[]
  /** Engine checks (WSDS_ENGINE_CHECKS) with the adapter's HTML parser; absent: off. */
  engine?: EngineChecks
}

export const DEFAULT_FORMS: readonly ChallengeForm[] = ['code', 'program']

export const DEFAULT_TIMEOUT_MS = 10_000
export const DEFAULT_MAX_BAD_FRAMES = 10
const ID_BYTES = 16

/** A fresh 128-bit URL-safe id, for connection ids and tokens (PROTOCOL.md, Sequence 2). */
export function newId(random: RandomSource): string {
  return toBase64Url(random.bytes(ID_BYTES))
}

export interface OpenOptions {
  connectionId: string
  origin: string
  hostname: string
  now: number
  timeoutMs: number
}

/** State of a freshly upgraded socket; the self-hosted deadline counts from the upgrade. */
export function openConnection(o: OpenOptions): Transition {
  const state: ConnectionState = {
    connectionId: o.connectionId,
    origin: o.origin,
    hostname: o.hostname,
    createdAt: o.now,
    phase: 'pending',
    helloSeen: false,
    keySetId: null,
    outstanding: null,
    deadlineAt: o.now + o.timeoutMs,
    badFrames: 0,
  }
  return { state, actions: [{ type: 'timer', at: state.deadlineAt }] }
}

const send = (message: ServerMessage): Action => ({ type: 'send', message })

function reject(state: ConnectionState, reason: RejectReason, prefix: Action[] = []): Transition {
  return {
    state: { ...state, phase: 'closed', outstanding: null, deadlineAt: null },
    actions: [
      ...prefix,
      { type: 'timer', at: null },
      send({ type: 'rejected', reason }),
      { type: 'close', code: closeCodeFor(reason), reason },
    ],
    outcome: reason,
  }
}

function issueChallenge(state: ConnectionState, ctx: LifecycleContext, keySetId: string, deadlineAt: number, prefix: Action[], minPowBits = 0): Transition {
  const keySet = ctx.keyRing.resolve(keySetId)
  if (keySet === null) return reject(state, 'stale-keyset', prefix)
  const challenge = createChallenge({ keySet, hostname: state.hostname, random: ctx.random, form: state.form ?? 'code', engine: ctx.engine })
  const token = newId(ctx.random)
  const expiresInMs = Math.max(0, deadlineAt - ctx.now)
  // Proof of work is a field of its own, independent of the challenge's form (docs/protocol.md).
  const powBits = ctx.sha256 === undefined ? 0 : Math.max(ctx.powBits ?? 0, minPowBits)
  const pow = powBits > 0 ? { pow: { alg: 'sha256' as const, bits: powBits } } : {}
  return {
    state: { ...state, keySetId, outstanding: { token, expected: challenge.expected, ...(powBits > 0 ? { powBits } : {}) }, deadlineAt },
    actions: [
      ...prefix,
      send(
        challenge.form === 'program'
          ? { type: 'challenge', token, form: 'program', program: challenge.program, expiresInMs, ...pow }
          : { type: 'challenge', token, code: challenge.code, expiresInMs, ...pow },
      ),
      { type: 'timer', at: deadlineAt },
    ],
  }
}

function badMessage(state: ConnectionState, ctx: LifecycleContext, message: string): Transition {
  const badFrames = state.badFrames + 1
  const next = { ...state, badFrames }
  const actions: Action[] = [send({ type: 'error', code: 'bad-message', message })]
  if (badFrames > (ctx.maxBadFrames ?? DEFAULT_MAX_BAD_FRAMES)) {
    return {
      state: { ...next, phase: 'closed', outstanding: null, deadlineAt: null },
      actions: [...actions, { type: 'timer', at: null }, { type: 'close', code: CloseCode.badMessages, reason: 'too many bad messages' }],
      outcome: 'too-many-bad-frames',
    }
  }
  return { state: next, actions }
}

export function transition(state: ConnectionState, event: LifecycleEvent, ctx: LifecycleContext): Transition {
  // Frames ws already buffered can still arrive after we decided to close: ignore them.
  if (state.phase === 'closed') return { state, actions: [] }
  switch (event.type) {
    case 'binary':
      return badMessage(state, ctx, 'binary frames are not part of the protocol')
    case 'deadline':
      if (state.deadlineAt === null || ctx.now < state.deadlineAt) return { state, actions: [] }
      return reject(state, 'timeout')
    case 'rechallenge':
      if (state.phase !== 'verified' || state.keySetId === null || state.outstanding !== null) return { state, actions: [] }
      return issueChallenge(state, ctx, state.keySetId, ctx.now + ctx.timeoutMs, [], event.powBits)
    case 'text':
      // Checked on arrival, not only by the timer: a timer that fires late (a loaded event
      // loop) must not give a solver more time, for the first challenge or a re-challenge
      // alike (PROTOCOL.md, Sequence 7: `timeout` is "no answer within expiresInMs").
      if (state.deadlineAt !== null && ctx.now >= state.deadlineAt) return reject(state, 'timeout')
      break
  }
  const parsed = parseClientMessage(event.text)
  if (!parsed.ok) return badMessage(state, ctx, parsed.error)
  const message = parsed.message
  switch (message.action) {
    case 'ping':
      return { state, actions: [send({ type: 'pong' })] }
    case 'hello': {
      if (state.helloSeen) return badMessage(state, ctx, 'hello was already received on this connection')
      if (message.v !== PROTOCOL_VERSION) return reject(state, 'unsupported-version')
      let seen: ConnectionState = { ...state, helloSeen: true }
      const bindingMode = ctx.binder === undefined ? 'off' : (ctx.binding ?? 'optional')
      // A refused binding ends the handshake before it starts: no `connection` frame.
      if (bindingMode !== 'off') {
        if (message.bind !== undefined) {
          const clientKey = parseBindOffer(message.bind)
          if (clientKey === null) return reject(seen, 'bad-binding')
          seen = { ...seen, bind: { clientKey } }
        } else if (bindingMode === 'required') return reject(seen, 'binding-required')
      }
      const connection = send({ type: 'connection', connectionId: state.connectionId })
      // The first form the client prefers that this deployment allows (PROTOCOL.md, "Challenge forms").
      const allowed = ctx.forms ?? DEFAULT_FORMS
      const form = (message.forms ?? ['code']).find((f) => allowed.includes(f))
      if (form === undefined) return reject(seen, 'unsupported-form', [connection])
      seen = { ...seen, form }
      const keySet = ctx.keyRing.resolve(message.keySet)
      if (keySet === null) return reject(seen, 'stale-keyset', [connection])
      if (state.deadlineAt !== null && ctx.now >= state.deadlineAt) return reject(seen, 'timeout', [connection])
      return issueChallenge(seen, ctx, keySet.id, state.deadlineAt ?? ctx.now + ctx.timeoutMs, [connection])
    }
    case 'answer': {
      const outstanding = state.outstanding
      // Any token but the outstanding one, on any phase, is fatal: a real client never sends it.
      if (outstanding === null || !constantTimeEqual(message.token, outstanding.token)) return reject(state, 'bad-token')
      // The work is checked first: it costs one hash, the answer check more.
      let pow: Transition['pow']
      if (outstanding.powBits !== undefined && outstanding.powBits > 0) {
        const work = ctx.sha256 === undefined ? null : verifyPow(outstanding.token, outstanding.powBits, message.pow, ctx.sha256)
        // On the wire it is `wrong-answer` (PROTOCOL.md: it covers every other mismatch); metrics say why.
        if (work === null || !work.ok) return { ...reject(state, 'wrong-answer'), outcome: 'bad-pow' }
        pow = { bits: outstanding.powBits, solveMs: work.solveMs }
      }
      const check = checkAnswer(outstanding.expected, message.result, ctx.engine?.mode === 'enforce')
      const engine = check.engine === undefined ? {} : { engine: check.engine }
      if (!check.ok) return { ...reject(state, check.reason), ...engine }
      // The ECDH derivation runs only for a correct answer, so failed challenges cost none.
      let bind = state.bind
      if (bind !== undefined && bind.requestKey === undefined) {
        const derived = ctx.binder?.(bind.clientKey, state.connectionId) ?? null
        if (derived === null) return reject(state, 'bad-binding')
        bind = { clientKey: bind.clientKey, ...derived }
      }
      // A re-verification keeps the key: signed requests in flight stay valid.
      const verified: ServerMessage =
        bind?.serverKey !== undefined
          ? { type: 'verified', connectionId: state.connectionId, bind: { key: bind.serverKey } }
          : { type: 'verified', connectionId: state.connectionId }
      return {
        ...engine,
        ...(pow !== undefined ? { pow } : {}),
        state: { ...state, phase: 'verified', outstanding: null, deadlineAt: null, ...(bind !== undefined ? { bind } : {}) },
        actions: [
          { type: 'timer', at: null },
          bind?.requestKey !== undefined ? { type: 'persist-verified', bindKey: bind.requestKey } : { type: 'persist-verified' },
          send(verified),
        ],
        outcome: 'verified',
      }
    }
  }
}
