/**
 * The operations endpoint for step-up (docs/protocol.md, "Step-up"):
 * `POST /wsds/admin/rechallenge` with a bearer token (WSDS_ADMIN_TOKEN; off without one),
 * served on the metrics port when that is separate. The node that takes the request
 * re-challenges its own matching sockets and broadcasts the request through the store, so
 * on a cluster it reaches the node that holds the socket (Redis pub/sub).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { ADMIN_RECHALLENGE_PATH, parseRechallengeRequest, rechallengeBody, type RechallengeRequest } from '../core/operations.ts'
import type { Store } from '../core/store.ts'
import { shortHash, type Gateway } from '../gateway/gateway.ts'
import { sendJson } from '../proxy/http-auth.ts'

export { ADMIN_RECHALLENGE_PATH }
/** A request body or a broadcast larger than this is refused: the largest valid one is far smaller. */
const MAX_BODY_BYTES = 4096

export interface AdminOptions {
  /** Bearer token; the endpoint is off (404) without one. */
  token: string | null
  gateway: Gateway
  store: Store
  logger: Logger
}

export interface Admin {
  /** Handles a request for ADMIN_RECHALLENGE_PATH. */
  handle(req: IncomingMessage, res: ServerResponse): void
  /** Stops listening to other nodes' broadcasts. */
  close(): void
}

interface Broadcast {
  op: 'rechallenge'
  /** Node that took the request: it already acted, so it ignores its own message. */
  from: string
  /** The request body as the endpoint takes it, checked again by every receiver. */
  request: Record<string, unknown>
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest()

/** Constant-time bearer check: digests first, so neither content nor length leaks. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  return timingSafeEqual(digest(header ?? ''), digest(`Bearer ${token}`))
}

const describeTarget = (request: RechallengeRequest): Record<string, unknown> => {
  const t = request.target
  const target = 'connectionId' in t ? { conn: shortHash(t.connectionId) } : 'address' in t ? { address: t.address } : 'origin' in t ? { origin: t.origin } : { all: true }
  return { ...target, ...(request.powBits !== undefined ? { powBits: request.powBits } : {}) }
}

export function createAdmin(options: AdminOptions): Admin {
  const { token, gateway, store, logger } = options
  // Every node listens, with or without a token of its own: the request was authenticated
  // where it was taken, and anyone who can publish on the store's Redis owns it anyway.
  const unsubscribe =
    store.onBroadcast?.((message) => {
      if (message.length > MAX_BODY_BYTES) return
      let value: Partial<Broadcast>
      try {
        value = JSON.parse(message) as Partial<Broadcast>
      } catch {
        return
      }
      if (value?.op !== 'rechallenge' || value.from === gateway.nodeId) return
      const parsed = parseRechallengeRequest(value.request)
      if (!parsed.ok) return
      const n = gateway.rechallengeMatching(parsed.request)
      logger.info({ event: 'rechallenge', via: 'broadcast', from: value.from, rechallenged: n, ...describeTarget(parsed.request) }, 'operator re-challenge')
    }) ?? (() => {})

  async function run(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (token === null) return sendJson(res, 404, '{"error":"not-found"}')
    if (req.method !== 'POST') return sendJson(res, 405, '{"error":"method-not-allowed"}', { allow: 'POST' })
    if (!bearerMatches(req.headers.authorization, token)) {
      logger.warn({ event: 'admin-unauthorized', remote: req.socket.remoteAddress }, 'operations request with a wrong token')
      return sendJson(res, 401, '{"error":"unauthorized"}', { 'www-authenticate': 'Bearer' })
    }
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length
      if (size > MAX_BODY_BYTES) return sendJson(res, 413, '{"error":"body-too-large"}', { connection: 'close' })
      chunks.push(chunk)
    }
    let body: unknown
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      return sendJson(res, 400, JSON.stringify({ error: 'bad-request', message: 'body is not JSON' }))
    }
    const parsed = parseRechallengeRequest(body)
    if (!parsed.ok) return sendJson(res, 400, JSON.stringify({ error: 'bad-request', message: parsed.error }))
    const local = gateway.rechallengeMatching(parsed.request)
    let broadcast = false
    if (store.broadcast !== undefined) {
      const message: Broadcast = { op: 'rechallenge', from: gateway.nodeId, request: rechallengeBody(parsed.request) }
      try {
        await store.broadcast(JSON.stringify(message))
        broadcast = true
      } catch (cause) {
        logger.error({ event: 'rechallenge-broadcast-failed', error: String(cause) }, 'could not reach the other nodes')
        return sendJson(res, 503, JSON.stringify({ error: 'store-unavailable', node: gateway.nodeId, rechallenged: local, broadcast: false }))
      }
    }
    logger.info({ event: 'rechallenge', via: 'http', rechallenged: local, broadcast, ...describeTarget(parsed.request) }, 'operator re-challenge')
    // `rechallenged` counts this node's sockets; other nodes act on the broadcast and log their own.
    sendJson(res, 200, JSON.stringify({ node: gateway.nodeId, rechallenged: local, broadcast }))
  }

  return {
    handle(req, res) {
      run(req, res).catch((err: unknown) => {
        logger.error({ event: 'admin-error', error: String(err) }, 'operations request failed')
        if (!res.headersSent) sendJson(res, 500, '{"error":"internal"}')
        else res.destroy()
      })
    },
    close: unsubscribe,
  }
}
