/**
 * Upgrade admission (PROTOCOL.md, Sequence 1): which HTTP upgrades become sockets. Path,
 * shutdown, the per-address rate limit, then the Origin allowlist; a refused upgrade is
 * answered with a plain HTTP error before any WebSocket exists (ws README, "Client
 * authentication"), so a refused page costs no socket at all.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { OriginPolicy } from '../core/origin.ts'
import type { RateLimiter } from '../core/rate-limit.ts'
import { createLogBudget, logValue, type GatewayLogger } from './log.ts'
import type { GatewayStats, RefusalReason } from './stats.ts'

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

/** The first X-Forwarded-For hop when the proxy is trusted, else null (the TCP peer decides). */
export function forwardedAddress(req: IncomingMessage, trustProxy: boolean): string | null {
  if (!trustProxy) return null
  const xff = req.headers['x-forwarded-for']
  const first = (Array.isArray(xff) ? xff[0] : xff)?.split(',')[0]?.trim()
  // An address is at most 45 characters; a longer "first hop" is a client's invention and
  // must not become a huge rate-limiter key.
  return first ? first.slice(0, 64) : null
}

/** The TCP peer's address; a getpeername call the first time it is asked for. */
export function peerAddress(socket: Duplex): string {
  return (socket as Duplex & { remoteAddress?: string }).remoteAddress ?? 'unknown'
}

export function clientAddress(req: IncomingMessage, trustProxy: boolean): string {
  return forwardedAddress(req, trustProxy) ?? peerAddress(req.socket)
}

/** Refused-upgrade log lines: a burst of 20, then 5 per second; the rest are counted. */
const REFUSAL_LOG_BURST = 20
const REFUSAL_LOGS_PER_SECOND = 5

export interface AdmissionOptions {
  /** URL path of the WebSocket endpoint; other paths are not ours. */
  path: string
  origins: OriginPolicy
  rateLimiter: RateLimiter | null
  trustProxy: boolean
  stats: GatewayStats
  logger?: GatewayLogger
  now: () => number
  /** True once the gateway is closing: upgrades are refused 503. */
  closing(): boolean
  /**
   * Called for an upgrade that passed every check. `remote` is the client address when a
   * check already needed it (or X-Forwarded-For gave it), else null: looking the peer up
   * costs a system call that an accepted socket need not pay until something asks.
   */
  admit(req: IncomingMessage, socket: Duplex, head: Buffer, origin: string, hostname: string, remote: string | null): void
}

export type RefuseUpgrade = (socket: Duplex, status: number, reason: RefusalReason, fields: Record<string, unknown>) => void

/**
 * Refusal with its accounting: every refusal is counted; a rate-limited caller is not logged
 * per attempt, and a store outage is logged once by the server when the store reports it.
 * The rest share a log budget, so a flood of refused upgrades cannot fill the disk.
 */
export function createRefusals(stats: GatewayStats, logger: GatewayLogger | undefined, now: () => number): RefuseUpgrade {
  const budget = createLogBudget(REFUSAL_LOG_BURST, REFUSAL_LOGS_PER_SECOND, now)
  return (socket, status, reason, fields) => {
    stats.upgradesRefused[reason]++
    refuseUpgrade(socket, status, reason)
    if (reason === 'rate-limit') return
    if (reason === 'store-unavailable') return logger?.debug?.({ event: 'upgrade-refused', reason, status, ...fields }, 'upgrade refused')
    const suppressed = budget.take()
    if (suppressed === null) return
    logger?.warn({ event: 'upgrade-refused', reason, status, ...fields, ...(suppressed > 0 ? { suppressed } : {}) }, 'upgrade refused')
  }
}

/**
 * The gateway's 'upgrade' check: false when the path is not ours (the caller decides), else
 * true, having refused the upgrade or handed it to `admit`.
 */
export function createUpgradeAdmission(o: AdmissionOptions, refuse: RefuseUpgrade = createRefusals(o.stats, o.logger, o.now)): (req: IncomingMessage, socket: Duplex, head: Buffer) => boolean {
  const { path, origins, rateLimiter, trustProxy } = o

  function checkOrigin(req: IncomingMessage, socket: Duplex, head: Buffer, remote: string | null): void {
    const origin = req.headers.origin
    const hostname = origins.check(origin)
    if (hostname === null || origin === undefined) {
      refuse(socket, 403, 'origin', { remote: logValue(remote ?? peerAddress(socket)), origin: origin === undefined ? null : logValue(origin) })
    } else {
      o.admit(req, socket, head, origin, hostname, remote)
    }
  }

  return (req, socket, head) => {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    if ((q === -1 ? url : url.slice(0, q)) !== path) return false
    if (o.closing()) {
      refuse(socket, 503, 'shutting-down', { remote: logValue(clientAddress(req, trustProxy)) })
      return true
    }
    if (rateLimiter === null) {
      checkOrigin(req, socket, head, forwardedAddress(req, trustProxy))
      return true
    }
    // The rate limiter decides first, so a flood of refused upgrades is refused (429)
    // without being looked at, let alone logged.
    const remote = clientAddress(req, trustProxy)
    const allowed = rateLimiter.take(remote)
    if (allowed === true) checkOrigin(req, socket, head, remote)
    else if (allowed === false) refuse(socket, 429, 'rate-limit', { remote })
    else {
      allowed.then(
        (ok) => (ok ? checkOrigin(req, socket, head, remote) : refuse(socket, 429, 'rate-limit', { remote })),
        // A shared limiter that cannot be reached does not decide; the store check that
        // follows refuses the upgrade if the shared store is down too.
        () => checkOrigin(req, socket, head, remote),
      )
    }
    return true
  }
}
