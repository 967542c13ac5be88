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

type Waiter = [resolve: (id: string) => void, reject: (error: unknown) => void]

/**
 * Callers waiting for a verified connection. `ready` is the first of them, so it settles with
 * the first verification or with giving up before one; fetch() and sign() wait here while
 * the session is between connections.
 */
export function createWaiters(): { ready: Promise<string>; wait(signal: AbortSignal | null | undefined): Promise<string>; settle(outcome: string | WsdsError): void } {
  let waiters: Waiter[] = []
  const ready = new Promise<string>((resolve, reject) => void waiters.push([resolve, reject]))
  // Marks the promise handled: a page that never awaits `ready` must not get an
  // unhandledrejection for a session it has already seen fail through events.
  ready.catch(() => {})
  return {
    ready,
    /** Waits for the next verification, or giving up; honours `signal`. */
    wait: (signal) =>
      new Promise<string>((resolve, reject) => {
        const settle =
          (fn: (value: any) => void) =>
          (value: unknown): void => {
            signal?.removeEventListener('abort', abort)
            waiters = waiters.filter((w) => w !== waiter)
            fn(value)
          }
        const waiter: Waiter = [settle(resolve), settle(reject)]
        const abort = () => waiter[1](signal!.reason)
        if (signal?.aborted) return abort()
        signal?.addEventListener('abort', abort, { once: true })
        waiters.push(waiter)
      }),
    /** Resolves every waiter with the verified id, or rejects them all with why the session ended. */
    settle(outcome) {
      for (const waiter of waiters.splice(0)) waiter[typeof outcome === 'string' ? 0 : 1](outcome as string & WsdsError)
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
