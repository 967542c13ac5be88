/**
 * The `ws` transport around the core lifecycle: upgrade-time checks (path, Origin, rate
 * limit, store), one state machine per socket, deadline timers, lease renewal and close.
 * Rejection happens in the HTTP 'upgrade' event, before any socket exists (ws README,
 * "Client authentication"), so a refused page costs no WebSocket at all.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket, type RawData } from 'ws'
import { WsdsError } from '../core/errors.ts'
import type { KeyRing } from '../core/keyring.ts'
import {
  DEFAULT_TIMEOUT_MS,
  newId,
  openConnection,
  transition,
  type Action,
  type ConnectionState,
  type LifecycleContext,
  type LifecycleEvent,
  type Transition,
} from '../core/lifecycle.ts'
import { CloseCode, encodeServerMessage } from '../core/protocol.ts'
import { createRandomPool, type RandomSource } from '../core/random.ts'
import type { ConnectionRecord, Store } from '../core/store.ts'
import { createOriginPolicy } from '../core/origin.ts'
import type { RateLimiter } from './rate-limit.ts'
import { createGatewayStats, type GatewayStats, type RefusalReason } from './stats.ts'

export interface GatewayOptions {
  store: Store
  keyRing: KeyRing
  /** Whole origins allowed to open sockets (PROTOCOL.md, Sequence 1). */
  allowedOrigins: readonly string[]
  /** URL path of the WebSocket endpoint (default '/wsds'). */
  path?: string
  /** Challenge deadline from the upgrade, ms (default 10000). */
  challengeTimeoutMs?: number
  /** Largest message, bytes, after reassembly (default 16384); larger closes with 1009. */
  maxPayloadBytes?: number
  /** Record lease, ms (default 30000); renewed every third of it while the socket is open. */
  leaseMs?: number
  /** Interval of WebSocket-level pings that find dead peers, ms (default 30000; 0 = off). */
  heartbeatMs?: number
  /** Upgrade limiter per client address; null = off. */
  rateLimiter?: RateLimiter | null
  /** Believe X-Forwarded-For for the client address (default false). */
  trustProxy?: boolean
  /** Name of this node, stored in records it owns (default: random). */
  nodeId?: string
  random?: RandomSource
  now?: () => number
  logger?: GatewayLogger
}

export interface GatewayLogger {
  debug?(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}

export interface Gateway {
  /** Handles an HTTP upgrade; false when the path is not the gateway's (caller decides). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean
  /** Sends a fresh challenge to a verified connection (PROTOCOL.md: re-verification). */
  rechallenge(connectionId: string): boolean
  readonly stats: GatewayStats
  readonly openConnections: number
  readonly verifiedConnections: number
  readonly nodeId: string
  /** Closes every socket (1001) and waits until their records are deleted. */
  close(): Promise<void>
}

interface Conn {
  ws: WebSocket
  /** Client address, for logs. */
  remote: string
  state: ConnectionState
  record: ConnectionRecord
  timer: NodeJS.Timeout | null
  /** Events that arrived while an async action (store write) was under way. */
  backlog: LifecycleEvent[] | null
  /** Message budget (token bucket): tokens left and when it was last topped up. */
  budget: number
  budgetAt: number
}

const MAX_BACKLOG = 32
/**
 * Messages a client may send: a burst of 20, then 2 per second. A real page sends a hello,
 * an answer per challenge and a ping every 25 s; a flood is closed with 4429
 * (PROTOCOL.md, Close codes) before it can make the gateway work for it.
 */
const MESSAGE_BURST = 20
const MESSAGES_PER_SECOND = 2
/** Unsent bytes we hold for a client that does not read before dropping it. */
const MAX_BUFFERED_BYTES = 256 * 1024

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  429: 'Too Many Requests',
  503: 'Service Unavailable',
}

/** Answers an upgrade request with a plain HTTP error and drops the TCP connection. */
export function refuseUpgrade(socket: Duplex, status: number, error: string): void {
  if (socket.writable) {
    const body = JSON.stringify({ error })
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nConnection: close\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}

/** A log-safe stand-in for a connection id: enough to correlate lines, useless to replay. */
export function shortHash(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 10)
}

export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = req.headers['x-forwarded-for']
    const first = (Array.isArray(xff) ? xff[0] : xff)?.split(',')[0]?.trim()
    if (first) return first
  }
  return req.socket.remoteAddress ?? 'unknown'
}

function positiveInt(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new WsdsError('ERR_CONFIG', `${name} must be an integer >= ${min}, got ${value}`)
  }
  return value
}

export function createGateway(options: GatewayOptions): Gateway {
  const { store, keyRing } = options
  const path = options.path ?? '/wsds'
  const timeoutMs = positiveInt('challengeTimeoutMs', options.challengeTimeoutMs ?? DEFAULT_TIMEOUT_MS, 1)
  const maxPayload = positiveInt('maxPayloadBytes', options.maxPayloadBytes ?? 16 * 1024, 64)
  const leaseMs = positiveInt('leaseMs', options.leaseMs ?? 30_000, 100)
  const heartbeatMs = options.heartbeatMs ?? 30_000
  const random = options.random ?? createRandomPool()
  const now = options.now ?? Date.now
  const trustProxy = options.trustProxy ?? false
  const rateLimiter = options.rateLimiter ?? null
  const nodeId = options.nodeId ?? newId(random).slice(0, 12)
  const logger = options.logger
  const origins = createOriginPolicy(options.allowedOrigins)
  const stats = createGatewayStats()
  const conns = new Map<string, Conn>()
  let closing = false
  const pendingDeletes = new Set<Promise<void>>()

  // perMessageDeflate off: challenge frames are small and compression costs CPU per socket.
  const wss = new WebSocketServer({ noServer: true, maxPayload, perMessageDeflate: false, clientTracking: false })

  const ctx = (): LifecycleContext => ({ now: now(), keyRing, random, timeoutMs })

  const refuse = (socket: Duplex, status: number, reason: RefusalReason, fields: Record<string, unknown>) => {
    stats.upgradesRefused[reason]++
    // A store outage is logged once by the server when the store reports it, not per upgrade.
    if (reason === 'store-unavailable') logger?.debug?.({ event: 'upgrade-refused', reason, status, ...fields }, 'upgrade refused')
    else logger?.warn({ event: 'upgrade-refused', reason, status, ...fields }, 'upgrade refused')
    refuseUpgrade(socket, status, reason)
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    if ((q === -1 ? url : url.slice(0, q)) !== path) return false
    const remote = clientAddress(req, trustProxy)
    if (closing) {
      refuse(socket, 503, 'shutting-down', { remote })
      return true
    }
    const origin = req.headers.origin
    const hostname = origins.check(origin)
    if (hostname === null || origin === undefined) {
      refuse(socket, 403, 'origin', { remote, origin: origin ?? null })
      return true
    }
    if (rateLimiter === null) {
      admit(req, socket, head, origin, hostname, remote)
      return true
    }
    const allowed = rateLimiter.take(remote)
    if (allowed === true) admit(req, socket, head, origin, hostname, remote)
    else if (allowed === false) refuse(socket, 429, 'rate-limit', { remote })
    else {
      allowed.then(
        (ok) => (ok ? admit(req, socket, head, origin, hostname, remote) : refuse(socket, 429, 'rate-limit', { remote })),
        // A shared limiter that cannot be reached does not decide; the store check that
        // follows refuses the upgrade if the shared store is down too.
        () => admit(req, socket, head, origin, hostname, remote),
      )
    }
    return true
  }

  function admit(req: IncomingMessage, socket: Duplex, head: Buffer, origin: string, hostname: string, remote: string): void {
    const t = now()
    const record: ConnectionRecord = {
      connectionId: newId(random),
      status: 'pending',
      origin,
      createdAt: t,
      nodeId,
      expiresAt: t + leaseMs,
    }
    // The record exists before the socket does, so the id the client is about to receive is
    // never unknown to an authenticator; a store that is down refuses the upgrade instead.
    store.put(record, { ttlMs: leaseMs }).then(
      () => {
        if (socket.destroyed) {
          void deleteRecord(record.connectionId)
          return
        }
        wss.handleUpgrade(req, socket, head, (ws) => accept(ws, record, hostname, remote))
      },
      (cause: unknown) => {
        stats.storeErrors++
        refuse(socket, 503, 'store-unavailable', { remote, error: String(cause) })
      },
    )
  }

  function accept(ws: WebSocket, record: ConnectionRecord, hostname: string, remote: string): void {
    stats.upgradesAccepted++
    const opened = openConnection({
      connectionId: record.connectionId,
      origin: record.origin,
      hostname,
      now: record.createdAt,
      timeoutMs,
    })
    const conn: Conn = { ws, remote, state: opened.state, record, timer: null, backlog: null, budget: MESSAGE_BURST, budgetAt: record.createdAt }
    conns.set(record.connectionId, conn)
    run(conn, opened)
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!spend(conn)) {
        stats.rateLimitedSockets++
        logger?.warn({ event: 'rejected', reason: 'message-rate', remote: conn.remote, conn: shortHash(conn.record.connectionId) }, 'connection rejected')
        conn.state = { ...conn.state, phase: 'closed' }
        conn.ws.close(CloseCode.rateLimited, 'too many messages')
        return
      }
      dispatch(conn, isBinary ? { type: 'binary' } : { type: 'text', text: data.toString() })
    })
    // ws reports oversized frames (it closes with 1009 itself) and protocol errors here;
    // without a listener they would crash the process.
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') stats.oversizedFrames++
    })
    ws.on('pong', () => ((ws as WebSocket & { wsdsAlive?: boolean }).wsdsAlive = true))
    ws.on('close', () => onClose(conn))
  }

  function spend(conn: Conn): boolean {
    if (conn.state.phase === 'closed') return true
    const t = now()
    conn.budget = Math.min(MESSAGE_BURST, conn.budget + ((t - conn.budgetAt) * MESSAGES_PER_SECOND) / 1000)
    conn.budgetAt = t
    if (conn.budget < 1) return false
    conn.budget--
    return true
  }

  function dispatch(conn: Conn, event: LifecycleEvent): void {
    if (conn.backlog !== null) {
      if (conn.backlog.length >= MAX_BACKLOG) {
        conn.ws.close(CloseCode.rateLimited, 'too many messages')
        return
      }
      conn.backlog.push(event)
      return
    }
    run(conn, transition(conn.state, event, ctx()))
  }

  function run(conn: Conn, result: Transition): void {
    conn.state = result.state
    if (result.outcome !== undefined) {
      stats.outcomes[result.outcome]++
      if (result.outcome !== 'verified') {
        // One line per rejection; the id only as a short hash, never the token or answer.
        logger?.warn({ event: 'rejected', reason: result.outcome, remote: conn.remote, conn: shortHash(conn.record.connectionId) }, 'connection rejected')
      }
    }
    const actions = result.actions
    for (let i = 0; i < actions.length; i++) {
      const action = actions[i]!
      if (action.type === 'persist-verified') {
        persistThen(conn, actions.slice(i + 1))
        return
      }
      act(conn, action)
    }
  }

  function act(conn: Conn, action: Exclude<Action, { type: 'persist-verified' }>): void {
    switch (action.type) {
      case 'send':
        if (action.message.type === 'challenge') stats.challengesIssued++
        if (action.message.type === 'error') stats.badFrames++
        if (conn.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
          // A client that sends but never reads would make us hold its replies forever.
          conn.ws.terminate()
          break
        }
        conn.ws.send(encodeServerMessage(action.message))
        break
      case 'close':
        conn.ws.close(action.code, action.reason)
        break
      case 'timer':
        if (conn.timer !== null) clearTimeout(conn.timer)
        conn.timer = action.at === null ? null : setTimeout(() => {
          conn.timer = null
          dispatch(conn, { type: 'deadline' })
        }, Math.max(0, action.at - now()))
        break
    }
  }

  /** Writes the verified record, then sends what follows (`verified`), replaying any backlog. */
  function persistThen(conn: Conn, rest: Action[]): void {
    conn.backlog = []
    const t = now()
    // Re-verifications are not handshakes: only the first verification is timed.
    const firstVerification = conn.record.status === 'pending'
    conn.record = { ...conn.record, status: 'verified', verifiedAt: t, expiresAt: t + leaseMs }
    store.put(conn.record, { ttlMs: leaseMs }).then(
      () => {
        if (conn.state.phase !== 'closed' && conns.has(conn.record.connectionId)) {
          if (firstVerification) stats.handshakeSeconds.observe((t - conn.record.createdAt) / 1000)
          for (const action of rest) if (action.type !== 'persist-verified') act(conn, action)
        }
        const backlog = conn.backlog ?? []
        conn.backlog = null
        for (const event of backlog) dispatch(conn, event)
      },
      (cause: unknown) => {
        // Without the record no authenticator would admit the id: tell the client it failed
        // rather than sending a `verified` that nothing honours.
        stats.storeErrors++
        logger?.debug?.({ event: 'store-error', op: 'put', error: String(cause) }, 'could not store verified record')
        conn.backlog = null
        conn.state = { ...conn.state, phase: 'closed' }
        conn.ws.close(1011, 'store unavailable')
      },
    )
  }

  function deleteRecord(id: string): Promise<void> {
    const p = store.delete(id).catch((cause: unknown) => {
      // The lease bounds how long a record we could not delete stays admitted.
      stats.storeErrors++
      logger?.debug?.({ event: 'store-error', op: 'delete', error: String(cause) }, 'could not delete record')
    })
    pendingDeletes.add(p)
    void p.finally(() => pendingDeletes.delete(p))
    return p
  }

  function onClose(conn: Conn): void {
    if (conn.timer !== null) clearTimeout(conn.timer)
    conn.timer = null
    const id = conn.record.connectionId
    if (conns.get(id) === conn) conns.delete(id)
    conn.state = { ...conn.state, phase: 'closed' }
    conn.backlog = null
    stats.closed++
    void deleteRecord(id)
  }

  // One timer for all leases: a batch per tick, never a command per socket per tick.
  const leaseTimer = setInterval(() => {
    if (conns.size === 0) return
    store.renew([...conns.keys()], { ttlMs: leaseMs }).then(
      (missing) => {
        // Records that lapsed while the store was unreachable: this node still holds the
        // sockets, so it writes them back rather than let live, verified pages lose access.
        for (const id of missing) {
          const conn = conns.get(id)
          if (conn === undefined || conn.backlog !== null) continue
          const t = now()
          conn.record = { ...conn.record, expiresAt: t + leaseMs }
          store.put(conn.record, { ttlMs: leaseMs }).catch(() => void stats.storeErrors++)
        }
      },
      (cause: unknown) => {
        stats.storeErrors++
        logger?.debug?.({ event: 'store-error', op: 'renew', error: String(cause) }, 'could not renew leases')
      },
    )
  }, Math.max(50, Math.floor(leaseMs / 3)))
  leaseTimer.unref()

  const heartbeat =
    heartbeatMs > 0
      ? setInterval(() => {
          for (const conn of conns.values()) {
            const ws = conn.ws as WebSocket & { wsdsAlive?: boolean }
            if (ws.wsdsAlive === false) {
              ws.terminate()
              continue
            }
            ws.wsdsAlive = false
            ws.ping()
          }
        }, heartbeatMs)
      : null
  heartbeat?.unref()

  return {
    handleUpgrade,
    rechallenge(id) {
      const conn = conns.get(id)
      if (conn === undefined || conn.state.phase !== 'verified') return false
      dispatch(conn, { type: 'rechallenge' })
      return true
    },
    stats,
    get openConnections() {
      return conns.size
    },
    get verifiedConnections() {
      // Counted on demand (scrapes, tests) rather than kept in step on every transition.
      let n = 0
      for (const conn of conns.values()) if (conn.state.phase === 'verified') n++
      return n
    },
    nodeId,
    async close() {
      closing = true
      clearInterval(leaseTimer)
      if (heartbeat !== null) clearInterval(heartbeat)
      const closed = [...conns.values()].map(
        (conn) =>
          new Promise<void>((resolve) => {
            conn.ws.once('close', () => resolve())
            conn.ws.close(1001, 'gateway shutting down')
            setTimeout(() => {
              conn.ws.terminate()
              resolve()
            }, 1000).unref()
          }),
      )
      await Promise.all(closed)
      await Promise.all([...pendingDeletes])
      wss.close()
    },
  }
}

/**
 * Mounts a gateway on an existing HTTP(S) server's upgrade event. Upgrades on other paths
 * are left to other listeners, or answered 404 when there are none.
 */
export function attachGateway(server: Server, options: GatewayOptions): Gateway {
  const gateway = createGateway(options)
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => {})
    if (gateway.handleUpgrade(req, socket, head)) return
    if (server.listenerCount('upgrade') <= 1) refuseUpgrade(socket, 404, 'not-found')
  })
  return gateway
}
