/**
 * `wsds/react`: one WSDS session per `<WsdsProvider>`, its state in `useWsds()`.
 *
 * The provider opens the socket in an effect and closes it in the effect's cleanup, so
 * unmounting revokes the id (PROTOCOL.md, Sequence 9). The socket is opened one macrotask
 * after the effect runs: React's StrictMode mounts, unmounts and mounts again within one
 * task in development, and deferring the open lets the first cleanup cancel it before any
 * socket exists, so the gateway sees one socket per provider. Nothing here touches
 * `window`, `WebSocket` or `location` before an effect runs, so server rendering is safe
 * and renders `'connecting'`.
 */
import { createContext, createElement, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react'
import { WsdsError, connect, type ConnectOptions, type WsdsSession } from '../client/index.ts'
import { REJECT_REASONS } from '../core/protocol.ts'

export type WsdsStatus = 'connecting' | 'verified' | 'rejected' | 'closed'

export interface WsdsContextValue {
  /** `'connecting'` until verified (and again while reconnecting); `'rejected'` or `'closed'` once the session gave up. */
  status: WsdsStatus
  /** Id of the current connection, null while none is open. */
  connectionId: string | null
  /** Why the session was rejected or closed; its `code` is the wire reason (e.g. `stale-keyset`) or an `ERR_*` code. */
  error: WsdsError | null
  /** The session's fetch: waits for verification, adds the id (and the signature where the session is bound). */
  fetch: (input: RequestInfo | URL, init?: RequestInit) => Promise<Response>
  /**
   * Headers that authenticate one request for another HTTP client (axios, ky, XHR): the
   * connectionId header and, on a bound session, `WSDS-Signature`. Waits for verification.
   */
  sign: (method: string, url: string | URL) => Promise<Record<string, string>>
}

export interface WsdsProviderProps extends ConnectOptions {
  children?: ReactNode
}

const WsdsContext = createContext<WsdsContextValue | null>(null)

interface Live {
  state: Pick<WsdsContextValue, 'status' | 'connectionId' | 'error'>
}

const INITIAL: Live['state'] = { status: 'connecting', connectionId: null, error: null }

/** The part of a session that `sign` needs, from SDK builds that have request binding. */
type Signer = { sign?: (method: string, url: string | URL) => Promise<Record<string, string> | string> }

export function WsdsProvider(props: WsdsProviderProps): ReactNode {
  const { children, ...options } = props
  const [state, setState] = useState<Live['state']>(INITIAL)
  // Waiters for the session of the current effect: a child's effect runs before its
  // parent's, so a child may call fetch() before the provider has opened anything.
  const sessionRef = useRef<{ session: WsdsSession | null; waiters: Array<(s: WsdsSession) => void> }>({ session: null, waiters: [] })
  // Options are compared by value: an inline `keys={[...]}` must not reconnect on every render.
  const latest = useRef(options)
  latest.current = options
  const identity = `${options.url}\n${options.keySet ?? ''}\n${Array.isArray(options.keys) ? options.keys.join(',') : ''}`

  useEffect(() => {
    let session: WsdsSession | null = null
    let cancelled = false
    const offs: Array<() => void> = []
    setState(INITIAL)
    const timer = setTimeout(() => {
      if (cancelled) return
      try {
        session = connect(latest.current)
      } catch (err) {
        setState({ status: 'rejected', connectionId: null, error: asWsdsError(err) })
        return
      }
      const s = session
      sessionRef.current.session = s
      for (const resolve of sessionRef.current.waiters.splice(0)) resolve(s)
      const update = (next: Partial<Live['state']>) => {
        if (!cancelled) setState((prev) => ({ ...prev, ...next }))
      }
      offs.push(
        s.on('connection', (id) => update({ status: 'connecting', connectionId: id, error: null })),
        s.on('verified', (id) => update({ status: 'verified', connectionId: id, error: null })),
        // A rejection may still be followed by a reconnect (`timeout`): the next
        // `connection` sets 'connecting' again, so the status follows the live socket.
        s.on('rejected', (reason) => update({ status: 'rejected', connectionId: null, error: rejection(reason) })),
        s.on('closed', ({ willReconnect }) => {
          if (cancelled) return
          setState((prev) =>
            willReconnect
              ? { ...prev, status: 'connecting', connectionId: null }
              : prev.status === 'rejected'
                ? prev
                : { ...prev, status: 'closed', connectionId: null },
          )
        }),
      )
      // `ready` rejects when the session gives up before its first verification (the socket
      // never opened, reconnects exhausted): that error is what the page shows.
      s.ready.catch((err: unknown) => {
        const error = asWsdsError(err)
        update({ status: error.code === 'ERR_CLOSED' ? 'closed' : 'rejected', connectionId: null, error })
      })
    }, 0)
    return () => {
      cancelled = true
      clearTimeout(timer)
      for (const off of offs) off()
      if (session !== null) {
        if (sessionRef.current.session === session) sessionRef.current.session = null
        session.close()
      }
    }
  }, [identity])

  const value = useMemo<WsdsContextValue>(() => {
    const current = (): Promise<WsdsSession> => {
      const { session } = sessionRef.current
      if (session !== null) return Promise.resolve(session)
      return new Promise((resolve) => sessionRef.current.waiters.push(resolve))
    }
    return {
      ...state,
      fetch: (input, init) => current().then((s) => s.fetch(input, init)),
      sign: (method, url) =>
        current().then(async (s) => {
          const id = await s.ready
          const headers: Record<string, string> = { [options.header ?? 'connectionId']: s.connectionId ?? id }
          const signer = (s as WsdsSession & Signer).sign
          if (typeof signer === 'function') {
            const signed = await signer.call(s, method, url)
            if (typeof signed === 'string') headers['WSDS-Signature'] = signed
            else Object.assign(headers, signed)
          }
          return headers
        }),
    }
    // `fetch` and `sign` read the session through the ref: they stay valid across reconnects.
  }, [state, options.header])

  return createElement(WsdsContext.Provider, { value }, children)
}

/** The nearest provider's session state. Throws outside a `<WsdsProvider>`. */
export function useWsds(): WsdsContextValue {
  const value = useContext(WsdsContext)
  if (value === null) throw new WsdsError('ERR_CONFIG', 'useWsds() must be called inside a <WsdsProvider>')
  return value
}

function asWsdsError(err: unknown): WsdsError {
  return err instanceof WsdsError ? err : new WsdsError('ERR_CONFIG', String(err), { cause: err })
}

function rejection(reason: string): WsdsError {
  // A reason from a newer gateway is not in the code union; it stays in the message.
  const code = (REJECT_REASONS as readonly string[]).includes(reason) ? (reason as WsdsError['code']) : 'ERR_CLOSED'
  return new WsdsError(code, `rejected: ${reason}`)
}
