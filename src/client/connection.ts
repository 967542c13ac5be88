/**
 * One WebSocket connection of a session, from opening to close (PROTOCOL.md, Sequence): the
 * handshake (`hello` with the forms and binding offer), the frames it acts on, answering each
 * challenge (re-challenges of a verified connection included), binding's key on `verified`,
 * keep-alive pings and the handshake deadline. What a close means for the session (give up,
 * or reconnect) is the session's decision: ./index.ts.
 */
import { WsdsError } from '../core/errors.ts'
import { PROTOCOL_VERSION, type ClientMessage, type HelloMessage, type RejectReason } from '../core/protocol.ts'
import { deriveRequestKey, offerBinding } from './binding.ts'
import { answerChallenge } from './challenge.ts'
import { dispatchFrame, type FrameHandlers } from './frames.ts'
import type { Settings } from './options.ts'
import { closeError, isPermanent } from './session.ts'
import type { SessionEvents, WebSocketLike } from './types.ts'

export const OPEN = 1

/** A connection as the session sees it. */
export interface Connection {
  ws: WebSocketLike
  /** Set by `connection`; the session reports it before verification too. */
  id: string | null
  verified: boolean
  /** K_req, a non-extractable HMAC key; null when unbound. */
  key: CryptoKey | null
  /** The binding key pair offered in `hello`; null when unbound. */
  pair: CryptoKeyPair | null
  /** The `rejected` frame's reason, if one came. */
  rejected: RejectReason | null
}

/** What a connection reports to its session. */
export interface SessionHooks {
  /** Whether `conn` is the session's connection (the session goes on or not). */
  current(conn: Connection): boolean
  /** current(conn), and the session has not given up. */
  live(conn: Connection): boolean
  emit<K extends keyof SessionEvents>(event: K, arg: Parameters<SessionEvents[K]>[0]): void
  giveUp(error: WsdsError): void
  verified(conn: Connection): void
  /**
   * The session's connection closed. `error` is why, should the session not reconnect;
   * `permanent` when a new connection would only be rejected again.
   */
  closed(code: number, reason: string, error: WsdsError, permanent: boolean): void
}

/** Sends `message` if the socket is open; a socket going away decides in its close event. */
export function send(ws: WebSocketLike, message: ClientMessage): void {
  if (ws.readyState !== OPEN) return
  try {
    ws.send(JSON.stringify(message))
  } catch {}
}

/**
 * The handshake's first frame (PROTOCOL.md, Sequence 3): `hello` with the forms, the key set
 * and, where WebCrypto exists, the binding offer. Resolves with the binding key pair (null:
 * unbound); sends nothing if the socket stopped being live meanwhile.
 */
export async function sendHello(ws: WebSocketLike, settings: Pick<Settings, 'forms' | 'keySet' | 'subtle'>, live: () => boolean): Promise<CryptoKeyPair | null> {
  // JSON.stringify drops an undefined keySet.
  const hello: HelloMessage = { action: 'hello', v: PROTOCOL_VERSION, forms: [...settings.forms], keySet: settings.keySet }
  let keyPair: CryptoKeyPair | null = null
  if (settings.subtle) {
    try {
      // A fresh pair per connection; the private key never leaves WebCrypto.
      keyPair = await offerBinding(settings.subtle, hello)
    } catch {}
    if (!live()) return null
  }
  send(ws, hello)
  return keyPair
}

/** Opens a connection; null (after giving up) when the socket cannot even be constructed. */
export function openConnection(settings: Settings, hooks: SessionHooks): Connection | null {
  let ws: WebSocketLike
  try {
    ws = new settings.Socket(settings.url)
  } catch (cause) {
    // Browsers throw here for mixed content (ws: from an https page): no retry fixes that.
    hooks.giveUp(new WsdsError('ERR_CONNECT', `cannot open ${settings.url}`, { cause }))
    return null
  }
  const conn: Connection = { ws, id: null, verified: false, key: null, pair: null, rejected: null }
  const live = () => hooks.live(conn)
  let opened = false
  // Set when no challenge came in time: the close that follows is retryable, and reported as such.
  let timedOut = false
  const { handshakeTimeoutMs, pingIntervalMs } = settings
  const handshakeTimer =
    handshakeTimeoutMs > 0
      ? setTimeout(() => {
          if (!live()) return
          timedOut = true
          ws.close(1000)
        }, handshakeTimeoutMs)
      : undefined
  let pingTimer: ReturnType<typeof setInterval> | undefined

  ws.onopen = async () => {
    if (!live()) return
    opened = true
    conn.pair = await sendHello(ws, settings, live)
    if (live() && pingIntervalMs > 0) pingTimer = setInterval(() => send(ws, { action: 'ping' }), pingIntervalMs)
  }

  ws.onmessage = frameListener(conn, settings, hooks, () => clearTimeout(handshakeTimer))

  // A close event always follows an error; the decision is made there.
  ws.onerror = () => {}

  ws.onclose = (event: { code?: number; reason?: string }) => {
    if (!hooks.current(conn)) return
    clearInterval(pingTimer)
    clearTimeout(handshakeTimer)
    conn.verified = false
    const code = typeof event.code === 'number' ? event.code : 1006
    const reason = typeof event.reason === 'string' ? event.reason : ''
    hooks.closed(code, reason, closeError(settings, code, conn.rejected, opened, timedOut), isPermanent(conn.rejected))
  }
  return conn
}

/**
 * The socket's message listener: dispatches each frame (./frames.ts) to what it means for this
 * connection. Every challenge is answered, re-challenges of a verified connection included;
 * `challenged` stops the handshake deadline.
 */
function frameListener(conn: Connection, settings: Settings, hooks: SessionHooks, challenged: () => void): (event: { data?: unknown }) => void {
  const { ws } = conn
  const live = () => hooks.live(conn)
  let latestToken: string | null = null
  const onVerified = (id: string): void => {
    conn.id = id
    conn.verified = true
    hooks.verified(conn)
  }
  const handlers: FrameHandlers = {
    connection: (id) => hooks.emit('connection', (conn.id = id)),
    challenge(challenge) {
      challenged()
      latestToken = challenge.token
      hooks.emit('challenge', { expiresInMs: challenge.expiresInMs })
      void answerChallenge(challenge, settings, {
        live,
        latest: (token) => token === latestToken,
        send: (answer) => send(ws, answer),
        fail(error) {
          hooks.giveUp(error)
          ws.close(1000)
        },
      })
    },
    verified(id, serverKey) {
      const pair = conn.pair
      if (serverKey === undefined || pair === null) return onVerified(id)
      // Verified only once the key exists, so no call goes out unsigned.
      deriveRequestKey(settings.subtle!, pair.privateKey, serverKey, id).then(
        (key) => {
          if (!live()) return
          conn.key = key
          onVerified(id)
        },
        () => hooks.current(conn) && ws.close(4400),
      )
    },
    rejected(reason) {
      hooks.emit('rejected', (conn.rejected = reason))
      // The frame decides, not the close code (PROTOCOL.md, "Close codes"); don't wait for
      // a gateway (API Gateway) that is slow to close.
      if (ws.readyState === OPEN) ws.close(1000)
    },
  }
  return (event) => {
    if (live()) dispatchFrame(event.data, handlers)
  }
}
