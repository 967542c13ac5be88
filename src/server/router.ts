/**
 * The standalone server's HTTP routes: /api (authorized, then proxied or the built-in
 * greeting), forward auth (WSDS_AUTH_PATH), /healthz, /metrics and the admin endpoint (or
 * their own port), the WebSocket path's 426, and the demo. Decisions are core's (front.ts,
 * target.ts); this file only maps them onto node:http. It needs no listening server: the
 * handlers take a request and a response, so test/server-parts.test.ts drives them directly.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { CONNECTION_ID_HEADER, FORWARDED_URI_HEADER, SIGNATURE_HEADER } from '../core/access.ts'
import { constantTimeEqual } from '../core/encoding.ts'
import { CONNECTION_ID_RESPONSE_HEADER, ORIGIN_RESPONSE_HEADER, RULE_HEADER, type Front } from '../core/front.ts'
import { BAD_PATH_BODY, checkTarget } from '../core/target.ts'
import type { DemoHandler } from '../demo/handler.ts'
import { handleGreeting } from '../demo/greeting.ts'
import type { Gateway } from '../gateway/gateway.ts'
import { createCorsHook } from '../proxy/cors.ts'
import { accessRequestOf, connectionIdOf, decideRequest, headerOf, sendJson, sendRefusal } from '../proxy/http-auth.ts'
import type { ProxyHandler } from '../proxy/reverse-proxy.ts'
import { ADMIN_RECHALLENGE_PATH, type Admin } from './admin.ts'
import type { ServerConfig } from './config.ts'
import type { PolicyFile } from './policy-file.ts'

/** Where the protected service is mounted on the gateway's own port. */
export const API_PREFIX = '/api'
/** The WebSocket endpoint (PROTOCOL.md, Sequence 1). */
export const WS_PATH = '/wsds'

const FORWARD_AUTH_BLANKS: Readonly<Record<string, string>> = Object.freeze({
  [CONNECTION_ID_RESPONSE_HEADER]: '',
  [ORIGIN_RESPONSE_HEADER]: '',
  [RULE_HEADER]: '',
})

export type RouterConfig = Pick<ServerConfig, 'authPath' | 'metricsPath' | 'metricsPort' | 'metricsToken' | 'trustProxy' | 'corsOrigins'>

export interface RouterOptions {
  config: RouterConfig
  front: Front
  gateway: Pick<Gateway, 'nodeId' | 'openConnections'>
  admin: Pick<Admin, 'handle'>
  /** The Prometheus registry (server/metrics.ts). */
  metrics: { metrics(): Promise<string>; readonly contentType: string }
  /** The upstream's proxy (WSDS_UPSTREAM); null answers /api with the built-in greeting. */
  proxy: ProxyHandler | null
  demo: DemoHandler | null
  policy: PolicyFile | null
  /** The store's last reported status, for /healthz. */
  storeStatus: () => string
  logger: Logger
}

export interface RequestRouter {
  /** The public listener's `'request'` handler (TCP port and Unix socket). */
  handle(req: IncomingMessage, res: ServerResponse): void
  /** The metrics port's handler (WSDS_METRICS_PORT): metrics and the admin endpoint only. */
  handleMetricsPort(req: IncomingMessage, res: ServerResponse): void
}

interface RouterContext extends RouterOptions {
  cors: (req: IncomingMessage, res: ServerResponse) => boolean
  /** Metrics and admin live on their own port, not on the public one. */
  ownMetricsPort: boolean
  warnedNoForwardedUri: boolean
}

export function pathOf(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

const isApiPath = (path: string): boolean => path === API_PREFIX || path.startsWith(API_PREFIX + '/')

export function createRequestRouter(options: RouterOptions): RequestRouter {
  const ctx: RouterContext = {
    ...options,
    // Cross-origin pages (WSDS_CORS_ORIGINS): preflights carry no id, so they are answered before authorization.
    cors: createCorsHook(options.config.corsOrigins),
    ownMetricsPort: options.config.metricsPort !== null,
    warnedNoForwardedUri: false,
  }
  return {
    handle: (req, res) => routeRequest(ctx, req, res),
    handleMetricsPort: (req, res) => routeMetricsPort(ctx, req, res),
  }
}

function routeRequest(ctx: RouterContext, req: IncomingMessage, res: ServerResponse): void {
  // One canonical target before routing, policy and signatures (src/core/target.ts); behind
  // forward auth the target that matters is the proxy's original one.
  const target = req.url ?? ''
  const path = pathOf(target)
  const forwardedUri = path === ctx.config.authPath ? headerOf(req, FORWARDED_URI_HEADER) : undefined
  if (!checkTarget(target).ok || (forwardedUri !== undefined && !checkTarget(forwardedUri).ok)) {
    req.resume()
    return sendJson(res, 400, BAD_PATH_BODY)
  }
  const isApi = isApiPath(path)
  if (isApi && ctx.cors(req, res)) return
  if ((isApi || path === ctx.config.authPath) && answerCached(ctx, req, res, isApi)) return
  routeUncached(ctx, req, res, path).catch((err: unknown) => {
    ctx.logger.error({ event: 'request-error', error: String(err) }, 'request failed')
    if (!res.headersSent) sendJson(res, 500, '{"error":"internal"}')
    else res.destroy()
  })
}

/**
 * The hot path, a protected request whose id is cached: answered without a promise. False
 * when the cache cannot decide (the store must be asked).
 */
function answerCached(ctx: RouterContext, req: IncomingMessage, res: ServerResponse, isApi: boolean): boolean {
  const id = connectionIdOf(req)
  // A bound connection's cached admission needs the request (method, target, signature);
  // reading it only when the request is signed keeps the unbound hot path as it was.
  const signed = req.headers[SIGNATURE_HEADER] !== undefined
  const cached = ctx.front.decideCached(id, signed ? accessRequestOf(req, { forwarded: !isApi, trustProxy: ctx.config.trustProxy }) : undefined)
  if (cached === undefined) return false
  if (!cached.pass) sendRefusal(req, res, cached)
  else if (isApi) passApi(ctx, req, res, cached.headers)
  else passAuth(res, cached.headers)
  return true
}

async function routeUncached(ctx: RouterContext, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const { config } = ctx
  if (isApiPath(path)) return authorize(ctx, req, res, false)
  if (path === config.authPath) return authorize(ctx, req, res, true)
  if (path === '/healthz') {
    return sendJson(res, 200, JSON.stringify({ status: 'ok', node: ctx.gateway.nodeId, store: ctx.storeStatus(), open: ctx.gateway.openConnections }))
  }
  if (path === config.metricsPath && !ctx.ownMetricsPort) return serveMetrics(ctx, req, res)
  if (path === ADMIN_RECHALLENGE_PATH && !ctx.ownMetricsPort) return ctx.admin.handle(req, res)
  if (path === WS_PATH) return sendJson(res, 426, '{"error":"upgrade-required"}', { upgrade: 'websocket' })
  if (ctx.demo !== null && ctx.demo(req, res)) return
  sendJson(res, 404, '{"error":"not-found"}')
}

/** Asks the front (the store, when the cache cannot tell) and passes or refuses. */
async function authorize(ctx: RouterContext, req: IncomingMessage, res: ServerResponse, forwarded: boolean): Promise<void> {
  const { policy } = ctx
  // Behind forward auth, path rules see X-Forwarded-Uri; a proxy that does not send it makes
  // every path look like the auth endpoint, so deny rules on paths never fire. Said once.
  if (forwarded && !ctx.warnedNoForwardedUri && policy !== null && policy.current.active && req.headers[FORWARDED_URI_HEADER] === undefined) {
    ctx.warnedNoForwardedUri = true
    ctx.logger.warn(
      { event: 'policy-no-forwarded-uri', path: ctx.config.authPath },
      'forward auth request without X-Forwarded-Uri: policy path rules cannot match; make the proxy send it (deploy/ configurations do)',
    )
  }
  const decision = await decideRequest(ctx.front, req, { forwarded, trustProxy: ctx.config.trustProxy })
  if (!decision.pass) sendRefusal(req, res, decision)
  else if (forwarded) passAuth(res, decision.headers)
  else passApi(ctx, req, res, decision.headers)
}

/** An admitted /api request: to the upstream, or to the built-in greeting without one. */
function passApi(ctx: RouterContext, req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
  if (ctx.proxy !== null) return ctx.proxy(req, res, headers)
  req.url = (req.url ?? '/').slice(API_PREFIX.length) || '/'
  handleGreeting(req, res)
}

/**
 * An admitted forward-auth request: 204 with every X-WSDS-* header, empty when it does not
 * apply (a rule admitted the request: no connection). A proxy that copies a header the answer
 * lacks may pass on garbage instead (Caddy 2.6's copy_headers leaves its placeholder text).
 */
function passAuth(res: ServerResponse, headers: Record<string, string>): void {
  // `connectionId` too, set to the verified id (empty when a rule admitted the request): a
  // proxy that copies it onto the request (Traefik's authResponseHeaders) replaces whatever
  // the client sent under that name.
  res.writeHead(204, { ...FORWARD_AUTH_BLANKS, ...headers, [CONNECTION_ID_HEADER]: headers[CONNECTION_ID_RESPONSE_HEADER] ?? '', 'cache-control': 'no-store' })
  res.end()
}

async function serveMetrics(ctx: RouterContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const token = ctx.config.metricsToken
  if (token !== null && !constantTimeEqual(req.headers.authorization ?? '', `Bearer ${token}`)) {
    return sendJson(res, 401, '{"error":"unauthorized"}', { 'www-authenticate': 'Bearer' })
  }
  const text = await ctx.metrics.metrics()
  res.writeHead(200, { 'content-type': ctx.metrics.contentType, 'cache-control': 'no-store' })
  res.end(text)
}

// Metrics on a port of their own keep them off the public listener entirely.
function routeMetricsPort(ctx: RouterContext, req: IncomingMessage, res: ServerResponse): void {
  const path = pathOf(req.url ?? '/')
  if (path === ADMIN_RECHALLENGE_PATH) return ctx.admin.handle(req, res)
  if (path !== ctx.config.metricsPath) return sendJson(res, 404, '{"error":"not-found"}')
  serveMetrics(ctx, req, res).catch(() => sendJson(res, 500, '{"error":"internal"}'))
}
