/**
 * Wire types and parsing for PROTOCOL.md version 1. Imported by the gateway, the Lambda
 * handlers and the browser SDK alike, so it uses nothing but the language.
 */

export const PROTOCOL_VERSION = 1

/** Close codes, PROTOCOL.md "Close codes". */
export const CloseCode = {
  normal: 1000,
  tooLarge: 1009,
  badMessages: 4400,
  unsupportedVersion: 4400,
  /** A refused extension: `bad-binding`, `binding-required`, `unsupported-form`. */
  refusedExtension: 4400,
  failed: 4401,
  timeout: 4408,
  rateLimited: 4429,
} as const

export type RejectReason =
  | 'wrong-answer'
  | 'bad-token'
  | 'bad-domain'
  | 'stale-keyset'
  | 'timeout'
  | 'unsupported-version'
  // PROTOCOL.md, Extensions
  | 'bad-binding'
  | 'binding-required'
  | 'unsupported-form'

export const REJECT_REASONS: readonly RejectReason[] = [
  'wrong-answer',
  'bad-token',
  'bad-domain',
  'stale-keyset',
  'timeout',
  'unsupported-version',
  'bad-binding',
  'binding-required',
  'unsupported-form',
]

/** Close code that follows each `rejected` reason (PROTOCOL.md, Sequence 7). */
export function closeCodeFor(reason: RejectReason): number {
  switch (reason) {
    case 'timeout':
      return CloseCode.timeout
    case 'unsupported-version':
      return CloseCode.unsupportedVersion
    case 'bad-binding':
    case 'binding-required':
    case 'unsupported-form':
      return CloseCode.refusedExtension
    default:
      return CloseCode.failed
  }
}

// client -> server

/** Challenge forms (PROTOCOL.md, "Challenge forms"). */
export type ChallengeForm = 'code' | 'program'
export const CHALLENGE_FORMS: readonly ChallengeForm[] = ['code', 'program']

export interface HelloMessage {
  action: 'hello'
  v: number
  keySet?: string
  /**
   * Request binding offer (PROTOCOL.md, "Request binding"), passed on unchecked: the
   * lifecycle validates it so that a malformed one is `bad-binding`, not `bad-message`.
   */
  bind?: unknown
  /** Forms the client can run, in its order of preference; unknown names are dropped. Absent: ["code"]. */
  forms?: ChallengeForm[]
}

export interface AnswerMessage {
  action: 'answer'
  token: string
  result: unknown
  /** Proof of work for a challenge that asked for it (docs/protocol.md), unchecked here. */
  pow?: unknown
}

export interface PingMessage {
  action: 'ping'
}

export type ClientMessage = HelloMessage | AnswerMessage | PingMessage
export type ClientAction = ClientMessage['action']

// server -> client

export interface ConnectionMessage {
  type: 'connection'
  connectionId: string
}

/** Proof-of-work parameters of a challenge (PROTOCOL.md, "Re-challenge and proof of work"). */
export interface PowParams {
  alg: 'sha256'
  bits: number
  [extra: string]: unknown
}

interface ChallengeBase {
  type: 'challenge'
  token: string
  expiresInMs: number
  pow?: PowParams
}

/** Step 5: JavaScript source of one function expression. */
export interface CodeChallengeMessage extends ChallengeBase {
  form?: 'code'
  code: string
}

/** The same computation as JSON data for the SDK's interpreter (docs/protocol.md). */
export interface ProgramChallengeMessage extends ChallengeBase {
  form: 'program'
  program: unknown
}

export type ChallengeMessage = CodeChallengeMessage | ProgramChallengeMessage

export interface VerifiedMessage {
  type: 'verified'
  connectionId: string
  /** The gateway's ephemeral public key, when the connection is bound. */
  bind?: { key: string }
}

export interface RejectedMessage {
  type: 'rejected'
  reason: RejectReason
}

export interface ErrorMessage {
  type: 'error'
  code: 'bad-message'
  message: string
}

export interface PongMessage {
  type: 'pong'
}

export type ServerMessage =
  | ConnectionMessage
  | ChallengeMessage
  | VerifiedMessage
  | RejectedMessage
  | ErrorMessage
  | PongMessage

export type ParseResult =
  | { ok: true; message: ClientMessage }
  | { ok: false; error: string }

const fail = (error: string): ParseResult => ({ ok: false, error })

/**
 * Parses one client frame. Never throws: every malformed input becomes `{ ok: false }` with
 * a short human-readable reason, which the gateway sends back in an `error` frame.
 * Unknown extra fields are ignored (PROTOCOL.md, Transport).
 */
export function parseClientMessage(text: string): ParseResult {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return fail('frame is not valid JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return fail('frame is not a JSON object')
  }
  const obj = value as Record<string, unknown>
  switch (obj.action) {
    case 'hello': {
      if (typeof obj.v !== 'number' || !Number.isInteger(obj.v)) {
        return fail('hello needs an integer "v"')
      }
      if (obj.keySet !== undefined && typeof obj.keySet !== 'string') {
        return fail('hello "keySet" must be a string')
      }
      if (obj.forms !== undefined && (!Array.isArray(obj.forms) || obj.forms.length > 16 || !obj.forms.every((f) => typeof f === 'string'))) {
        return fail('hello "forms" must be an array of strings')
      }
      const message: HelloMessage = { action: 'hello', v: obj.v }
      if (typeof obj.keySet === 'string') message.keySet = obj.keySet
      if (obj.bind !== undefined) message.bind = obj.bind
      if (obj.forms !== undefined) {
        // Forms this version does not know are ignored, so newer clients keep working.
        message.forms = (obj.forms as string[]).filter((f): f is ChallengeForm => (CHALLENGE_FORMS as readonly string[]).includes(f))
      }
      return { ok: true, message }
    }
    case 'answer': {
      if (typeof obj.token !== 'string') return fail('answer needs a string "token"')
      if (!('result' in obj)) return fail('answer needs a "result"')
      const message: AnswerMessage = { action: 'answer', token: obj.token, result: obj.result }
      if (obj.pow !== undefined) message.pow = obj.pow
      return { ok: true, message }
    }
    case 'ping':
      return { ok: true, message: { action: 'ping' } }
    default:
      return fail(typeof obj.action === 'string' ? `unknown action "${obj.action.slice(0, 32)}"` : 'missing "action"')
  }
}

/**
 * Parses one server frame, for clients. Returns null for anything that is not a known
 * server message, which clients ignore.
 */
export function parseServerMessage(text: string): ServerMessage | null {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return null
  }
  if (typeof value !== 'object' || value === null) return null
  const obj = value as Record<string, unknown>
  switch (obj.type) {
    case 'connection':
      return typeof obj.connectionId === 'string' ? { type: obj.type, connectionId: obj.connectionId } : null
    case 'verified': {
      if (typeof obj.connectionId !== 'string') return null
      const bind = obj.bind as { key?: unknown } | undefined
      return typeof bind === 'object' && bind !== null && typeof bind.key === 'string'
        ? { type: 'verified', connectionId: obj.connectionId, bind: { key: bind.key } }
        : { type: 'verified', connectionId: obj.connectionId }
    }
    case 'challenge': {
      if (typeof obj.token !== 'string' || typeof obj.expiresInMs !== 'number') return null
      const pow = obj.pow as PowParams | undefined
      const withPow = typeof pow === 'object' && pow !== null && pow.alg === 'sha256' && Number.isInteger(pow.bits) ? { pow } : {}
      if (obj.form === 'program') {
        return 'program' in obj ? { type: 'challenge', token: obj.token, form: 'program', program: obj.program, expiresInMs: obj.expiresInMs, ...withPow } : null
      }
      if (obj.form !== undefined && obj.form !== 'code') return null
      return typeof obj.code === 'string' ? { type: 'challenge', token: obj.token, code: obj.code, expiresInMs: obj.expiresInMs, ...withPow } : null
    }
    case 'rejected':
      return typeof obj.reason === 'string' ? { type: 'rejected', reason: obj.reason as RejectReason } : null
    case 'error':
      return { type: 'error', code: 'bad-message', message: typeof obj.message === 'string' ? obj.message : '' }
    case 'pong':
      return { type: 'pong' }
    default:
      return null
  }
}

/** Characters a JSON string must escape, and surrogates (JSON.stringify escapes lone ones). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

/** `value` as a JSON string: quoted as it is when nothing in it needs an escape. */
function jsonString(value: string): string {
  return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`
}

/**
 * Serializes a server message; a function so transports never hand-build frames. The
 * frames of every handshake (`connection`, a code `challenge`, `verified`) are written as
 * templates around their strings: the challenge source is a few KB that JSON.stringify would
 * copy once more only to find nothing to escape (src/core/challenge.ts emits none). The
 * output is the JSON that JSON.stringify gives, key for key.
 */
export function encodeServerMessage(message: ServerMessage): string {
  switch (message.type) {
    case 'connection':
      return `{"type":"connection","connectionId":${jsonString(message.connectionId)}}`
    case 'verified':
      if (message.bind !== undefined) break
      return `{"type":"verified","connectionId":${jsonString(message.connectionId)}}`
    case 'challenge': {
      if (message.form !== undefined || !Number.isFinite(message.expiresInMs)) break
      const pow = message.pow === undefined ? '' : `,"pow":${JSON.stringify(message.pow)}`
      return `{"type":"challenge","token":${jsonString(message.token)},"code":${jsonString(message.code)},"expiresInMs":${message.expiresInMs}${pow}}`
    }
  }
  return JSON.stringify(message)
}
