/**
 * One error class for the whole project, with a `code` from a literal union so callers can
 * `switch` on it. Wire reasons (PROTOCOL.md "outcome") are reused as codes where they apply.
 * Expected protocol outcomes are values, not throws: these are for misuse, bad configuration
 * and infrastructure failures.
 */
export type WsdsErrorCode =
  // wire-level outcomes (PROTOCOL.md, Sequence 7), used by the client SDK's `ready` rejection
  | 'wrong-answer'
  | 'bad-token'
  | 'bad-domain'
  | 'stale-keyset'
  | 'timeout'
  | 'unsupported-version'
  | 'bad-binding'
  | 'binding-required'
  | 'unsupported-form'
  | 'bad-message'
  // the SDK's handshake got no challenge in time (it reconnects)
  | 'ERR_HANDSHAKE_TIMEOUT'
  // configuration and infrastructure
  | 'ERR_CONFIG'
  // a policy rules file that fails validation (the message names the rule and field)
  | 'ERR_POLICY'
  | 'ERR_KEYSET'
  | 'ERR_STORE_UNAVAILABLE'
  | 'ERR_CLOSED'
  | 'ERR_CONNECT'

export interface WsdsErrorOptions {
  cause?: unknown
  /** WebSocket close code that goes with this error, when there is one. */
  closeCode?: number
}

export class WsdsError extends Error {
  override readonly name = 'WsdsError'
  // Declared, not initialized: the constructor sets both, and no field initializers reach the SDK bundle.
  declare readonly code: WsdsErrorCode
  declare readonly closeCode: number | undefined

  constructor(code: WsdsErrorCode, message: string, options: WsdsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.closeCode = options.closeCode
  }
}

export function isWsdsError(value: unknown, code?: WsdsErrorCode): value is WsdsError {
  return value instanceof WsdsError && (code === undefined || value.code === code)
}
