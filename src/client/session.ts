/**
 * The session's own parts (./index.ts puts them together): its events, and what a close
 * that ends it means as an error.
 */
import { WsdsError } from '../core/errors.ts'
import type { RejectReason } from '../core/protocol.ts'
import type { SessionHooks } from './connection.ts'
import type { Settings } from './options.ts'
import type { WsdsSession } from './types.ts'

// The reject reasons this SDK knows (PROTOCOL.md, Sequence 7). The first six are ones a new
// connection would only hit again: retrying them would hammer the gateway with handshakes
// bound to fail.
const REASONS = 'stale-keyset unsupported-version bad-domain wrong-answer bad-binding binding-required bad-token timeout unsupported-form'.split(' ')
const PERMANENT = REASONS.slice(0, 6)
const EVENTS = 'connection challenge verified rejected closed'.split(' ')

/** Whether a new connection would only be rejected again for `reason`, so none is made. */
export const isPermanent = (reason: RejectReason | null): boolean => reason !== null && PERMANENT.includes(reason)

/** The session's events: listeners by name, and an emit that survives throwing listeners. */
export function createEvents(): Pick<WsdsSession, 'on'> & Pick<SessionHooks, 'emit'> {
  const listeners = new Map(EVENTS.map((event) => [event, new Set<(arg: any) => void>()]))
  return {
    emit(event, arg) {
      for (const fn of [...listeners.get(event)!]) {
        try {
          fn(arg)
        } catch (error) {
          // Like EventTarget: the page hears of it, the socket callback that emitted goes on.
          if (typeof reportError === 'function') reportError(error)
          else console.error(error)
        }
      }
    },
    on(event, fn) {
      const set = listeners.get(event)
      if (!set) throw new TypeError('unknown event ' + event)
      set.add(fn)
      return () => void set.delete(fn)
    },
  }
}

/** Why a session that will not reconnect ended: the error `ready` and fetch() reject with. */
export function closeError(
  settings: Pick<Settings, 'url' | 'handshakeTimeoutMs'>,
  closeCode: number,
  reason: RejectReason | null,
  opened: boolean,
  handshakeTimedOut: boolean,
): WsdsError {
  if (handshakeTimedOut && reason === null) return new WsdsError('ERR_HANDSHAKE_TIMEOUT', `no challenge in ${settings.handshakeTimeoutMs} ms`, { closeCode })
  return reason !== null
    ? // A reason from a newer gateway is not in the code union; report it in the message only.
      new WsdsError(REASONS.includes(reason) ? reason : 'ERR_CLOSED', 'rejected: ' + reason, { closeCode })
    : new WsdsError(opened ? 'ERR_CLOSED' : 'ERR_CONNECT', opened ? `closed (${closeCode}) before verification` : 'cannot connect to ' + settings.url, { closeCode })
}
