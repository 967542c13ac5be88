/**
 * Browser SDK: opens the WSDS socket, answers every challenge, and adds the verified
 * connectionId to REST calls (PROTOCOL.md, Sequence). No dependencies, and nothing from core
 * but pure modules (wire, errors, program interpreter, SHA-256), so it bundles to a few
 * kilobytes. The parts: options.ts (checks, backoff), connection.ts (one socket: handshake
 * and frames), frames.ts (message dispatch), challenge.ts (both forms, proof of work),
 * binding.ts (keys and signatures), session.ts (events, waiters, close errors); this file
 * puts the session together: the current connection, reconnects, the public object.
 */
import { WsdsError } from '../core/errors.ts'
import { signRequest } from './binding.ts'
import { OPEN, openConnection, type Connection, type SessionHooks } from './connection.ts'
import { readOptions, reconnectDelay } from './options.ts'
import { createEvents, createWaiters } from './session.ts'
import type { ConnectOptions, WsdsSession } from './types.ts'

export { WsdsError, isWsdsError, type WsdsErrorCode } from '../core/errors.ts'
export type { RejectReason } from '../core/protocol.ts'
export type {
  ChallengeFunction,
  CloseInfo,
  ConnectOptions,
  ReconnectOptions,
  SessionEvents,
  WebSocketConstructor,
  WebSocketLike,
  WsdsSession,
} from './types.ts'

export function connect(options: ConnectOptions): WsdsSession {
  const settings = readOptions(options)
  const events = createEvents()
  let current: Connection | null = null
  let retries = 0
  let stopped: WsdsError | null = null
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined
  // `ready` settles with the first verification, or with giving up before one.
  const waiters = createWaiters()

  const hooks: SessionHooks = {
    current: (conn) => conn === current,
    live: (conn) => conn === current && !stopped,
    emit: events.emit,
    giveUp(error) {
      if (stopped) return
      stopped = error
      if (current) current.verified = false
      clearTimeout(reconnectTimer)
      waiters.settle(error)
    },
    verified(conn) {
      retries = 0
      waiters.settle(conn.id!)
      events.emit('verified', conn.id!)
    },
    closed(code, reason, error, permanent) {
      current = null
      const backoff = settings.backoff
      const willReconnect = !stopped && backoff !== null && !permanent && retries < backoff.maxAttempts
      if (!willReconnect) hooks.giveUp(error)
      events.emit('closed', { code, reason, willReconnect })
      if (willReconnect && !stopped) reconnectTimer = setTimeout(open, reconnectDelay(backoff, retries++, Math.random()))
    },
  }
  const open = (): void => void (current = openConnection(settings, hooks))

  const whenVerified = (signal: AbortSignal | null | undefined): Promise<string> =>
    stopped ? Promise.reject(stopped) : current?.verified && current.id !== null ? Promise.resolve(current.id) : waiters.wait(signal)

  /** The current connection's signature for a request, or null when it is not bound. */
  const signature = (id: string, method: string, url: string | URL): Promise<string | null> =>
    current?.key ? signRequest(settings.subtle!, current.key, id, method, url, Date.now()) : Promise.resolve(null)

  open()
  return {
    get connectionId() {
      return current?.id ?? null
    },
    get verified() {
      return current?.verified ?? false
    },
    ready: waiters.ready,
    async fetch(input, init) {
      const id = await whenVerified(init?.signal)
      const isRequest = typeof Request === 'function' && input instanceof Request
      // init.headers replaces a Request's headers in fetch(), so start from whichever fetch would use.
      const headers = new Headers(init?.headers ?? (isRequest ? input.headers : undefined))
      headers.set(settings.header, id)
      const method = init?.method ?? (isRequest ? input.method : 'GET')
      const signed = await signature(id, method, isRequest ? input.url : String(input))
      if (signed !== null) headers.set('WSDS-Signature', signed)
      return globalThis.fetch(input, { ...init, headers })
    },
    async sign(method, url) {
      return signature(await whenVerified(null), method, url)
    },
    on: events.on,
    close() {
      hooks.giveUp(new WsdsError('ERR_CLOSED', 'closed by close()', { closeCode: 1000 }))
      const ws = current?.ws
      // CONNECTING or OPEN
      if (ws && ws.readyState <= OPEN) {
        try {
          ws.close(1000)
        } catch {
          // Already closing.
        }
      }
    },
  }
}
