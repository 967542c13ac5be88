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

export const REJECT_REASONS: readonly RejectReason[] = [
  'wrong-answer',
  'bad-token',
  'bad-domain',
  'stale-keyset',
  'timeout',
  'unsupported-version',
]

/** Close code that follows each `rejected` reason (PROTOCOL.md, Sequence 7). */
export function closeCodeFor(reason: RejectReason): number {
  switch (reason) {
    case 'timeout':
      return CloseCode.timeout
    case 'unsupported-version':
      return CloseCode.unsupportedVersion
    default:
      return CloseCode.failed
  }
}

// client -> server

export interface HelloMessage {
  action: 'hello'
  v: number
  keySet?: string
}

export interface AnswerMessage {
  action: 'answer'
  token: string
  result: unknown
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

export interface ChallengeMessage {
  type: 'challenge'
  token: string
  code: string
  expiresInMs: number
}

export interface VerifiedMessage {
  type: 'verified'
  connectionId: string
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
      const message: HelloMessage = { action: 'hello', v: obj.v }
      if (typeof obj.keySet === 'string') message.keySet = obj.keySet
      return { ok: true, message }
    }
    case 'answer': {
      if (typeof obj.token !== 'string') return fail('answer needs a string "token"')
      if (!('result' in obj)) return fail('answer needs a "result"')
      return { ok: true, message: { action: 'answer', token: obj.token, result: obj.result } }
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
    case 'verified':
      return typeof obj.connectionId === 'string' ? { type: obj.type, connectionId: obj.connectionId } : null
    case 'challenge':
      return typeof obj.token === 'string' && typeof obj.code === 'string' && typeof obj.expiresInMs === 'number'
        ? { type: 'challenge', token: obj.token, code: obj.code, expiresInMs: obj.expiresInMs }
        : null
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

/** Serializes a server message; a function so transports never hand-build frames. */
export function encodeServerMessage(message: ServerMessage): string {
  return JSON.stringify(message)
}
