/**
 * The `ws` transport around the core lifecycle, composed of named parts: upgrade admission
 * (upgrade.ts: path, Origin, rate limit), record persistence (records.ts), one session per
 * socket driving `transition()` (session.ts), deadlines on one coarse timer (deadlines.ts),
 * plus re-challenges, proof-of-work escalation, heartbeat and shutdown here. Rejection
 * happens in the HTTP 'upgrade' event, before any socket exists (ws README, "Client
 * authentication"), so a refused page costs no WebSocket at all.
 */
import { nodeSha256 } from '../crypto/node-sha256.ts'
import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocketServer } from 'ws'
import type { Binder, BindingMode } from '../core/binding.ts'
import { WsdsError } from '../core/errors.ts'
import { createNodeBinder } from '../crypto/node-binding.ts'
import type { KeyRing } from '../core/keyring.ts'
import { DEFAULT_TIMEOUT_MS, newId, openConnection, type LifecycleContext, type Transition } from '../core/lifecycle.ts'
import { browserFamily, type EngineChecks } from '../core/engine-check.ts'
import { matchesTarget, type RechallengeRequest } from '../core/operations.ts'
import type { PowPolicy } from '../core/pow-policy.ts'
import { isPowBits } from '../core/pow.ts'
import type { ChallengeForm } from '../core/protocol.ts'
import { createRandomPool, type RandomSource } from '../core/random.ts'
import type { ConnectionRecord, Store } from '../core/store.ts'
import { NO_OBSERVER, type HandshakeObserver } from '../core/observer.ts'
import { createOriginPolicy } from '../core/origin.ts'
import { createDeadlineQueue, deadlineTickMs } from './deadlines.ts'
import type { GatewayLogger } from './log.ts'
import type { RateLimiter } from './rate-limit.ts'
import { createRecordKeeper } from './records.ts'
import { createRechallengeTimer } from './rechallenge-timer.ts'
import { GatewaySocket, Session, type SessionHost } from './session.ts'
import { createGatewayStats, type GatewayStats } from './stats.ts'
import { createRefusals, createUpgradeAdmission, peerAddress, refuseUpgrade } from './upgrade.ts'

export { createLogBudget, logValue, MAX_LOG_VALUE, shortHash, type GatewayLogger } from './log.ts'
export { clientAddress, refuseUpgrade } from './upgrade.ts'

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

/** SHA-256 for the proof-of-work check (crypto/node-sha256.ts). */
export const powHash = nodeSha256

function positiveInt(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new WsdsError('ERR_CONFIG', `${name} must be an integer >= ${min}, got ${value}`)
  }
  return value
}

/** Options with defaults applied and checked: a bad value fails here, naming the option. */
function resolveOptions(options: GatewayOptions) {
  const random = options.random ?? createRandomPool()
  const rechallengeMs = options.rechallengeMs ?? null
  if (rechallengeMs !== null) positiveInt('rechallengeMs', rechallengeMs, 100)
  return {
    store: options.store,
    keyRing: options.keyRing,
    path: options.path ?? '/wsds',
    timeoutMs: positiveInt('challengeTimeoutMs', options.challengeTimeoutMs ?? DEFAULT_TIMEOUT_MS, 1),
    maxPayload: positiveInt('maxPayloadBytes', options.maxPayloadBytes ?? 16 * 1024, 64),
    leaseMs: positiveInt('leaseMs', options.leaseMs ?? 30_000, 100),
    heartbeatMs: options.heartbeatMs ?? 30_000,
    random,
    now: options.now ?? Date.now,
    trustProxy: options.trustProxy ?? false,
    rateLimiter: options.rateLimiter ?? null,
    nodeId: options.nodeId ?? newId(random).slice(0, 12),
    logger: options.logger,
    powPolicy: options.powPolicy ?? null,
    rechallengeMs,
    binding: options.binding ?? 'optional',
    binder: options.binder ?? createNodeBinder(),
    forms: options.challengeForms,
    engine: options.engineChecks,
  }
}

type Resolved = ReturnType<typeof resolveOptions>

/**
 * The lifecycle context of one event: the gateway's settings, read `now`, and the proof of
 * work this client's next challenge asks for. The hash is always there, so an operator can
 * ask for work even with WSDS_POW_BITS=0.
 */
function contextFor(o: Resolved, session: Session, handshaking: number): LifecycleContext {
  const c: LifecycleContext = { now: o.now(), keyRing: o.keyRing, random: o.random, timeoutMs: o.timeoutMs, binding: o.binding, binder: o.binder, forms: o.forms, engine: o.engine, sha256: powHash }
  if (o.powPolicy !== null) c.powBits = o.powPolicy.bitsFor(session.remote, handshaking)
  return c
}

/** Pings every socket each `intervalMs` and drops those that did not answer the last ping. */
function startHeartbeat(sessions: Map<string, Session>, intervalMs: number): () => void {
  if (intervalMs <= 0) return () => {}
  const timer = setInterval(() => {
    for (const session of sessions.values()) {
      const ws = session.ws
      if (!ws.alive) {
        ws.terminate()
        continue
      }
      ws.alive = false
      ws.ping()
    }
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/** Closes every socket with 1001 (terminating those that do not finish within a second). */
function closeAll(sessions: Iterable<Session>): Promise<void> {
  const closed = [...sessions].map(
    ({ ws }) =>
      new Promise<void>((resolve) => {
        ws.once('close', () => resolve())
        ws.close(1001, 'gateway shutting down')
        setTimeout(() => {
          ws.terminate()
          resolve()
        }, 1000).unref()
      }),
  )
  return Promise.all(closed).then(() => undefined)
}

export function createGateway(options: GatewayOptions): Gateway {
  const o = resolveOptions(options)
  const { store, leaseMs, now, powPolicy, logger, nodeId } = o
  const stats = createGatewayStats()
  const observer = options.observer ?? NO_OBSERVER
  const sessions = new Map<string, Session>()
  // Sockets still in their handshake: the load signal of the proof-of-work policy, kept as a
  // set because counting phases on demand would cost a scan per challenge.
  const handshaking = new Set<string>()
  const records = createRecordKeeper({ store, leaseMs, nodeId, random: o.random, now, stats, logger })
  const deadlines = createDeadlineQueue<Session>({ tickMs: deadlineTickMs(o.timeoutMs), now, onDue: (session) => session.expire() })
  const rechallenger =
    o.rechallengeMs === null
      ? null
      : createRechallengeTimer({ intervalMs: o.rechallengeMs, now, onDue: (ids) => ids.forEach((id) => rechallengeSession(sessions.get(id), 'periodic')) })
  let closing = false

  const host: SessionHost = {
    now,
    stats,
    observer,
    logger,
    records,
    context: (session) => contextFor(o, session, handshaking.size),
    deadline: (session, at) => (at === null ? deadlines.cancel(session) : deadlines.arm(session, at)),
    settled: (session, result) => settle(session, result),
    owns: (session) => sessions.get(session.id) === session,
    forget(session) {
      if (sessions.get(session.id) === session) sessions.delete(session.id)
      handshaking.delete(session.id)
      rechallenger?.cancel(session.id)
    },
  }

  /** Re-challenge schedule, proof-of-work escalation and metrics after an outcome. */
  function settle(session: Session, result: Transition): void {
    if (result.outcome !== 'verified') {
      rechallenger?.cancel(session.id)
      powPolicy?.recordFailure(session.remote)
      return
    }
    handshaking.delete(session.id)
    rechallenger?.schedule(session.id)
    if (result.pow !== undefined) {
      stats.powSolved++
      if (result.pow.solveMs !== null) observer.powSolved(result.pow.solveMs / 1000)
    }
  }

  function rechallengeSession(session: Session | undefined, trigger: 'periodic' | 'operator', powBits?: number): boolean {
    if (powBits !== undefined && !isPowBits(powBits)) throw new WsdsError('ERR_CONFIG', `powBits must be an integer in [0, 32], got ${powBits}`)
    if (session === undefined || session.state.phase !== 'verified' || session.state.outstanding !== null) return false
    stats.rechallenges[trigger]++
    session.dispatch(powBits === undefined ? { type: 'rechallenge' } : { type: 'rechallenge', powBits })
    return true
  }

  // perMessageDeflate off: challenge frames are small and compression costs CPU per socket.
  const wss = new WebSocketServer({ noServer: true, maxPayload: o.maxPayload, perMessageDeflate: false, clientTracking: false, WebSocket: GatewaySocket })
  const refuse = createRefusals(stats, logger, now)

  /** The record exists before the socket does, so the id the client is about to receive is never unknown to an authenticator; a store that is down refuses the upgrade instead. */
  function admit(req: IncomingMessage, socket: Duplex, head: Buffer, origin: string, hostname: string, remote: string | null): void {
    const record = records.pending(origin)
    records.put(record).then(
      () => {
        if (socket.destroyed) return void records.delete(record.connectionId)
        const family = browserFamily(req.headers['user-agent'])
        wss.handleUpgrade(req, socket, head, (ws) => accept(ws, socket, record, hostname, remote, family))
      },
      (cause: unknown) => {
        stats.storeErrors++
        refuse(socket, 503, 'store-unavailable', { remote: remote ?? peerAddress(socket), error: String(cause) })
      },
    )
  }

  function accept(ws: GatewaySocket, socket: Duplex, record: ConnectionRecord, hostname: string, remote: string | null, family: Session['family']): void {
    stats.upgradesAccepted++
    const id = record.connectionId
    const opened = openConnection({ connectionId: id, origin: record.origin, hostname, now: record.createdAt, timeoutMs: o.timeoutMs })
    handshaking.add(id)
    const session = new Session(host, ws, socket, record, opened, remote, family)
    sessions.set(id, session)
    powPolicy?.recordUpgrade(session.remote)
  }

  const handleUpgrade = createUpgradeAdmission({ path: o.path, origins: createOriginPolicy(options.allowedOrigins), rateLimiter: o.rateLimiter, trustProxy: o.trustProxy, stats, logger, now, closing: () => closing, admit }, refuse)

  const stopRenewal = records.renewLeases(
    () => [...sessions.keys()],
    (id) => {
      const session = sessions.get(id)
      if (session === undefined || session.backlog !== null) return null
      session.record = { ...session.record, expiresAt: now() + leaseMs }
      return session.record
    },
  )
  const stopHeartbeat = startHeartbeat(sessions, o.heartbeatMs)

  return {
    handleUpgrade,
    rechallenge: (id, opts) => rechallengeSession(sessions.get(id), 'operator', opts?.powBits),
    rechallengeMatching(request) {
      const target = request.target
      if ('connectionId' in target) return rechallengeSession(sessions.get(target.connectionId), 'operator', request.powBits) ? 1 : 0
      let n = 0
      // A snapshot: dispatching may close sockets (and change the map) as we go.
      for (const session of [...sessions.values()]) {
        const who = { connectionId: session.id, address: session.remote, origin: session.record.origin }
        if (matchesTarget(target, who) && rechallengeSession(session, 'operator', request.powBits)) n++
      }
      return n
    },
    stats,
    get openConnections() {
      return sessions.size
    },
    get verifiedConnections() {
      // Counted on demand (scrapes, tests) rather than kept in step on every transition.
      let n = 0
      for (const session of sessions.values()) if (session.state.phase === 'verified') n++
      return n
    },
    nodeId,
    async close() {
      closing = true
      rechallenger?.stop()
      stopRenewal()
      stopHeartbeat()
      await closeAll(sessions.values())
      deadlines.stop()
      await records.settled()
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
