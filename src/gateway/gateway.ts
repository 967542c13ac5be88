/**
 * The `ws` transport around the core lifecycle: upgrade-time checks (path, Origin, rate
 * limit, store), one state machine per socket, deadline timers, lease renewal and close.
 * Rejection happens in the HTTP 'upgrade' event, before any socket exists (ws README,
 * "Client authentication"), so a refused page costs no WebSocket at all.
 */
import { createHash } from 'node:crypto'
import { nodeSha256 } from '../crypto/node-sha256.ts'
import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer, type WebSocket, type RawData } from 'ws'
import type { Binder, BindingMode } from '../core/binding.ts'
import { WsdsError } from '../core/errors.ts'
import { createNodeBinder } from '../crypto/node-binding.ts'
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
import { browserFamily, type EngineChecks } from '../core/engine-check.ts'
import { matchesTarget, type RechallengeRequest } from '../core/operations.ts'
import type { PowPolicy } from '../core/pow-policy.ts'
import { isPowBits } from '../core/pow.ts'
import { CloseCode, encodeServerMessage, type ChallengeForm } from '../core/protocol.ts'
import { createRandomPool, type RandomSource } from '../core/random.ts'
import type { ConnectionRecord, Store } from '../core/store.ts'
import { NO_OBSERVER, type HandshakeObserver } from '../core/observer.ts'
import { createOriginPolicy } from '../core/origin.ts'
import type { RateLimiter } from './rate-limit.ts'
import { createRechallengeTimer } from './rechallenge-timer.ts'
import { createGatewayStats, type BrowserFamily, type GatewayStats, type RefusalReason } from './stats.ts'

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
  /** Re-challenge every verified connection at this interval, ms (default null = off; jitter 10%). */
  rechallengeMs?: number | null
  /** Proof-of-work difficulty per challenge (docs/protocol.md, "Proof of work"); null = none. */
  powPolicy?: PowPolicy | null
  /** WSDS_BINDING (default 'optional'; PROTOCOL.md, "Request binding"). */
  binding?: BindingMode
  /** Request-binding key derivation (default node:crypto's, crypto/node-binding.ts). */
  binder?: Binder
  /** Name of this node, stored in records it owns (default: random). */
  nodeId?: string
  random?: RandomSource
  now?: () => number
  logger?: GatewayLogger
  /** Challenge forms allowed (WSDS_CHALLENGE_FORMS; default code, program). */
  challengeForms?: readonly ChallengeForm[]
  /** Engine checks (WSDS_ENGINE_CHECKS) with their HTML parser (src/engine/parse5.ts); absent: off. */
  engineChecks?: EngineChecks
  /** Receives handshake and proof-of-work durations (core/observer.ts); default: none recorded. */
  observer?: HandshakeObserver
}

export interface GatewayLogger {
  debug?(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}

export interface Gateway {
  /** Handles an HTTP upgrade; false when the path is not the gateway's (caller decides). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean
  /**
   * Sends a fresh challenge to a verified connection (PROTOCOL.md: re-verification); false
   * when the id is not a verified connection of this node. `powBits` raises its proof of work.
   */
  rechallenge(connectionId: string, options?: { powBits?: number }): boolean
  /** Re-challenges every verified connection of this node that the request targets; returns how many. */
  rechallengeMatching(request: RechallengeRequest): number
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
  /** Browser family from the upgrade's User-Agent, for engine-check metrics. */
  family: BrowserFamily
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

/** SHA-256 for the proof-of-work check (crypto/node-sha256.ts). */
export const powHash = nodeSha256
/** Longest client-supplied value written to a log line, characters. */
export const MAX_LOG_VALUE = 200
/** Refused-upgrade log lines: a burst of 20, then 5 per second; the rest are counted. */
const REFUSAL_LOG_BURST = 20
const REFUSAL_LOGS_PER_SECOND = 5

/** A client-supplied value as a log field: cut to MAX_LOG_VALUE characters. */
export function logValue(value: string): string {
  return value.length > MAX_LOG_VALUE ? `${value.slice(0, MAX_LOG_VALUE)}...(${value.length} chars)` : value
}

/**
 * A token bucket for log lines. `take()` gives null when the line is to be dropped, else
 * how many were dropped since the last line written (so the gap shows in the log).
 */
export function createLogBudget(burst: number, perSecond: number, now: () => number): { take(): number | null } {
  let tokens = burst
  let at = now()
  let dropped = 0
  return {
    take() {
      const t = now()
      tokens = Math.min(burst, tokens + ((t - at) * perSecond) / 1000)
      at = t
      if (tokens < 1) {
        dropped++
        return null
      }
      tokens--
      const gap = dropped
      dropped = 0
      return gap
    },
  }
}

/**
 * ws closes a message of too many fragments (or buffered chunks) with 1008 before it tells
 * us why; PROTOCOL.md's close code table has no 1008: a message that never ends is a message
 * over the size limit, 1009. The gateway itself never closes with 1008.
 */
function closeOversizedWith1009(ws: WebSocket): void {
  const close = ws.close.bind(ws)
  ws.close = (code?: number, reason?: string | Buffer) => close(code === 1008 ? 1009 : code, reason)
}

/** A log-safe stand-in for a connection id: enough to correlate lines, useless to replay. */
export function shortHash(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 10)
}

export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = req.headers['x-forwarded-for']
    const first = (Array.isArray(xff) ? xff[0] : xff)?.split(',')[0]?.trim()
    // An address is at most 45 characters; a longer "first hop" is a client's invention and
    // must not become a huge rate-limiter key.
    if (first) return first.slice(0, 64)
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
  const observer = options.observer ?? NO_OBSERVER
  const conns = new Map<string, Conn>()
  const powPolicy = options.powPolicy ?? null
  // Sockets still in their handshake: the load signal of the proof-of-work policy, kept as a
  // set because counting phases on demand would cost a scan per challenge.
  const handshaking = new Set<string>()
  const sha256 = powHash
  const rechallengeMs = options.rechallengeMs ?? null
  if (rechallengeMs !== null) positiveInt('rechallengeMs', rechallengeMs, 100)
  const rechallenger =
    rechallengeMs === null
      ? null
      : createRechallengeTimer({
          intervalMs: rechallengeMs,
          now,
          onDue: (ids) => {
            for (const id of ids) rechallengeConn(conns.get(id), 'periodic')
          },
        })
  let closing = false
  const pendingDeletes = new Set<Promise<void>>()

  // perMessageDeflate off: challenge frames are small and compression costs CPU per socket.
  const wss = new WebSocketServer({ noServer: true, maxPayload, perMessageDeflate: false, clientTracking: false })

  const forms = options.challengeForms
  const engine = options.engineChecks
  const binding = options.binding ?? 'optional'
  const binder = options.binder ?? createNodeBinder()
  const ctx = (conn?: Conn): LifecycleContext => {
    const c: LifecycleContext = { now: now(), keyRing, random, timeoutMs, binding, binder, forms, engine }
    if (conn === undefined) return c
    // The hash is always there, so an operator can ask for work even with WSDS_POW_BITS=0.
    c.sha256 = sha256
    if (powPolicy !== null) c.powBits = powPolicy.bitsFor(conn.remote, handshaking.size)
    return c
  }

  function rechallengeConn(conn: Conn | undefined, trigger: 'periodic' | 'operator', powBits?: number): boolean {
    if (powBits !== undefined && !isPowBits(powBits)) throw new WsdsError('ERR_CONFIG', `powBits must be an integer in [0, 32], got ${powBits}`)
    if (conn === undefined || conn.state.phase !== 'verified' || conn.state.outstanding !== null) return false
    stats.rechallenges[trigger]++
    dispatch(conn, powBits === undefined ? { type: 'rechallenge' } : { type: 'rechallenge', powBits })
    return true
  }

  const refusalLog = createLogBudget(REFUSAL_LOG_BURST, REFUSAL_LOGS_PER_SECOND, now)
  const refuse = (socket: Duplex, status: number, reason: RefusalReason, fields: Record<string, unknown>) => {
    stats.upgradesRefused[reason]++
    refuseUpgrade(socket, status, reason)
    // A rate-limited caller is counted, not logged per attempt; a store outage is logged
    // once by the server when the store reports it. The rest share a log budget, so a flood
    // of refused upgrades cannot fill the disk.
    if (reason === 'rate-limit') return
    if (reason === 'store-unavailable') return logger?.debug?.({ event: 'upgrade-refused', reason, status, ...fields }, 'upgrade refused')
    const suppressed = refusalLog.take()
    if (suppressed === null) return
    logger?.warn({ event: 'upgrade-refused', reason, status, ...fields, ...(suppressed > 0 ? { suppressed } : {}) }, 'upgrade refused')
  }

  function handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    if ((q === -1 ? url : url.slice(0, q)) !== path) return false
    const remote = clientAddress(req, trustProxy)
    if (closing) {
      refuse(socket, 503, 'shutting-down', { remote: logValue(remote) })
      return true
    }
    // The rate limiter decides first, so a flood of refused upgrades is refused (429)
    // without being looked at, let alone logged.
    const checkOrigin = () => {
      const origin = req.headers.origin
      const hostname = origins.check(origin)
      if (hostname === null || origin === undefined) refuse(socket, 403, 'origin', { remote: logValue(remote), origin: origin === undefined ? null : logValue(origin) })
      else admit(req, socket, head, origin, hostname, remote)
    }
    if (rateLimiter === null) {
      checkOrigin()
      return true
    }
    const allowed = rateLimiter.take(remote)
    if (allowed === true) checkOrigin()
    else if (allowed === false) refuse(socket, 429, 'rate-limit', { remote })
    else {
      allowed.then(
        (ok) => (ok ? checkOrigin() : refuse(socket, 429, 'rate-limit', { remote })),
        // A shared limiter that cannot be reached does not decide; the store check that
        // follows refuses the upgrade if the shared store is down too.
        () => checkOrigin(),
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
        const family = browserFamily(req.headers['user-agent'])
        wss.handleUpgrade(req, socket, head, (ws) => accept(ws, record, hostname, remote, family))
      },
      (cause: unknown) => {
        stats.storeErrors++
        refuse(socket, 503, 'store-unavailable', { remote, error: String(cause) })
      },
    )
  }

  function accept(ws: WebSocket, record: ConnectionRecord, hostname: string, remote: string, family: BrowserFamily): void {
    stats.upgradesAccepted++
    closeOversizedWith1009(ws)
    const opened = openConnection({
      connectionId: record.connectionId,
      origin: record.origin,
      hostname,
      now: record.createdAt,
      timeoutMs,
    })
    const conn: Conn = { ws, remote, family, state: opened.state, record, timer: null, backlog: null, budget: MESSAGE_BURST, budgetAt: record.createdAt }
    conns.set(record.connectionId, conn)
    handshaking.add(record.connectionId)
    powPolicy?.recordUpgrade(remote)
    run(conn, opened)
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (!spend(conn)) {
        stats.rateLimitedSockets++
        logger?.warn({ event: 'rejected', reason: 'message-rate', remote: logValue(conn.remote), conn: shortHash(conn.record.connectionId) }, 'connection rejected')
        conn.state = { ...conn.state, phase: 'closed' }
        conn.ws.close(CloseCode.rateLimited, 'too many messages')
        return
      }
      dispatch(conn, isBinary ? { type: 'binary' } : { type: 'text', text: data.toString() })
    })
    // ws reports oversized frames (it closes with 1009 itself) and protocol errors here;
    // without a listener they would crash the process.
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || err.code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH' || err.code === 'WS_ERR_TOO_MANY_BUFFERED_PARTS') {
        stats.oversizedFrames++
      }
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
    run(conn, transition(conn.state, event, ctx(conn)))
  }

  function run(conn: Conn, result: Transition): void {
    conn.state = result.state
    if (result.engine !== undefined) stats.engineChecks[conn.family][result.engine]++
    if (result.outcome !== undefined) {
      stats.outcomes[result.outcome]++
      stepUp(conn, result)
      if (result.outcome !== 'verified') {
        // One line per rejection; the id only as a short hash, never the token or answer.
        logger?.warn({ event: 'rejected', reason: result.outcome, remote: logValue(conn.remote), conn: shortHash(conn.record.connectionId) }, 'connection rejected')
      }
    }
    const actions = result.actions
    for (let i = 0; i < actions.length; i++) {
      const action = actions[i]!
      if (action.type === 'persist-verified') {
        persistThen(conn, actions.slice(i + 1), action.bindKey)
        return
      }
      act(conn, action)
    }
  }

  /** Re-challenge schedule, proof-of-work escalation and metrics after an outcome. */
  function stepUp(conn: Conn, result: Transition): void {
    const id = conn.record.connectionId
    if (result.outcome === 'verified') {
      handshaking.delete(id)
      rechallenger?.schedule(id)
      if (result.pow !== undefined) {
        stats.powSolved++
        if (result.pow.solveMs !== null) observer.powSolved(result.pow.solveMs / 1000)
      }
    } else {
      rechallenger?.cancel(id)
      powPolicy?.recordFailure(conn.remote)
    }
  }

  function act(conn: Conn, action: Exclude<Action, { type: 'persist-verified' }>): void {
    switch (action.type) {
      case 'send':
        if (action.message.type === 'challenge') {
          stats.challengesIssued++
          const bits = action.message.pow?.bits
          if (bits !== undefined) stats.powIssued[bits] = (stats.powIssued[bits] ?? 0) + 1
        }
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
        armDeadline(conn, action.at)
        break
    }
  }

  /**
   * Arms the deadline timer for epoch ms `at` (null clears it). Node counts timers from its
   * cached loop time, so under load a timer can fire a few ms before `now()` reaches `at`;
   * the lifecycle then (rightly) ignores the `deadline`, so an early timer re-arms for the
   * time left instead of leaving the socket without a deadline.
   */
  function armDeadline(conn: Conn, at: number | null): void {
    if (conn.timer !== null) clearTimeout(conn.timer)
    conn.timer = null
    if (at === null) return
    conn.timer = setTimeout(() => {
      conn.timer = null
      if (conn.state.phase === 'closed') return
      if (now() < at) return armDeadline(conn, at)
      dispatch(conn, { type: 'deadline' })
    }, Math.max(1, at - now()))
  }

  /** Writes the verified record, then sends what follows (`verified`), replaying any backlog. */
  function persistThen(conn: Conn, rest: Action[], bindKey: string | undefined): void {
    conn.backlog = []
    const t = now()
    // Re-verifications are not handshakes: only the first verification is timed.
    const firstVerification = conn.record.status === 'pending'
    conn.record = { ...conn.record, status: 'verified', verifiedAt: t, expiresAt: t + leaseMs }
    // K_req goes with the record, so every node's authenticator can check signatures.
    if (bindKey !== undefined) conn.record.bindKey = bindKey
    store.put(conn.record, { ttlMs: leaseMs }).then(
      () => {
        if (conn.state.phase !== 'closed' && conns.has(conn.record.connectionId)) {
          if (firstVerification) observer.handshakeVerified((t - conn.record.createdAt) / 1000)
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
    handshaking.delete(id)
    rechallenger?.cancel(id)
    conn.state = { ...conn.state, phase: 'closed' }
    conn.backlog = null
    stats.closed++
    void deleteRecord(id)
  }

  // One timer for all leases: a batch per tick, never a command per socket per tick.
  const renewLeases = () => {
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
  }
  const leaseTimer = setInterval(renewLeases, Math.max(50, Math.floor(leaseMs / 3)))
  leaseTimer.unref()
  // When the store comes back (a restart, a Sentinel or Cluster failover), renew at once:
  // records that lapsed or that replication lost are rewritten before pages notice.
  const offStoreUp = store.onStatus((status) => {
    if (status === 'up') renewLeases()
  })

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
    rechallenge(id, opts) {
      return rechallengeConn(conns.get(id), 'operator', opts?.powBits)
    },
    rechallengeMatching(request) {
      const target = request.target
      if ('connectionId' in target) return rechallengeConn(conns.get(target.connectionId), 'operator', request.powBits) ? 1 : 0
      let n = 0
      // A snapshot: dispatching may close sockets (and change the map) as we go.
      for (const conn of [...conns.values()]) {
        const who = { connectionId: conn.record.connectionId, address: conn.remote, origin: conn.record.origin }
        if (matchesTarget(target, who) && rechallengeConn(conn, 'operator', request.powBits)) n++
      }
      return n
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
      rechallenger?.stop()
      clearInterval(leaseTimer)
      offStoreUp()
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
