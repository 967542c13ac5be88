/**
 * The standalone gateway process: one node:http server carrying the WebSocket endpoint, the
 * authenticator in front of the protected service, forward auth, health, metrics and the
 * demo, on the TCP port and optionally a Unix socket. Everything here is wiring; decisions
 * live in core.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Server as NetServer } from 'node:net'
import { pino, type Logger } from 'pino'
import { SIGNATURE_HEADER } from '../core/access.ts'
import { createAuthenticator, type Authenticator } from '../core/authenticator.ts'
import { createKeyRing } from '../core/keyring.ts'
import { generateKeySet, type KeySet } from '../core/keyset.ts'
import { createRandomPool } from '../core/random.ts'
import type { Store } from '../core/store.ts'
import { handleGreeting } from '../demo/greeting.ts'
import { attachGateway, type Gateway } from '../gateway/gateway.ts'
import type { RateLimiter } from '../core/rate-limit.ts'
import { constantTimeEqual, toHex } from '../core/encoding.ts'
import { CONNECTION_ID_RESPONSE_HEADER, ORIGIN_RESPONSE_HEADER, RULE_HEADER, createFront, type Front } from '../core/front.ts'
import { CONNECTION_ID_HEADER, FORWARDED_URI_HEADER } from '../core/access.ts'
import { BAD_PATH_BODY, checkTarget } from '../core/target.ts'
import { nodeRequestMac } from '../crypto/node-binding.ts'
import { accessRequestOf, connectionIdOf, decideRequest, headerOf, sendJson, sendRefusal } from '../proxy/http-auth.ts'
import { createCorsHook } from '../proxy/cors.ts'
import { createReverseProxy } from '../proxy/reverse-proxy.ts'
import { openStore } from '../stores/open-store.ts'
import type { ServerConfig } from './config.ts'
import { importAdapter } from '../stores/open-store.ts'
import { createMetricsRegistry, createPrometheusObserver } from './metrics.ts'
import { ADMIN_RECHALLENGE_PATH, createAdmin } from './admin.ts'
import { createPowPolicy } from '../core/pow-policy.ts'
import { listenUnixSocket } from './unix-socket.ts'
import { nodeSha256, openPolicyFile, type PolicyFile } from './policy-file.ts'

export interface RunningServer {
  /** The HTTP server: it listens on the TCP port and is handed the Unix socket's connections. */
  server: Server
  /** What accepts connections: the TCP port (the server itself), then the Unix socket when there is one. */
  listeners: NetServer[]
  gateway: Gateway
  store: Store
  authenticator: Authenticator
  front: Front
  /** The rules file in force (WSDS_POLICY_FILE), or null. */
  policy: PolicyFile | null
  logger: Logger
  /** The key set pages use when they name none (generated when no file was given). */
  currentKeySet: KeySet
  port: number
  /** http://host:port */
  url: string
  /** Where Prometheus scrapes. */
  metricsUrl: string
  close(): Promise<void>
}

export interface StartOptions {
  /** Use this store (and limiter) instead of the ones the configuration names. */
  store?: Store
  rateLimiter?: RateLimiter | null
  logger?: Logger
}

const API_PREFIX = '/api'
/** How long a client may take to send its request headers, ms. */
export const HEADERS_TIMEOUT_MS = 10_000
/** How long a client may take to send a whole request, ms. */
export const REQUEST_TIMEOUT_MS = 300_000
/** How often Node looks for connections over those timeouts, ms. */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000
const FORWARD_AUTH_BLANKS: Readonly<Record<string, string>> = Object.freeze({
  [CONNECTION_ID_RESPONSE_HEADER]: '',
  [ORIGIN_RESPONSE_HEADER]: '',
  [RULE_HEADER]: '',
})
const WS_PATH = '/wsds'

function pathOf(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

/**
 * Whether /metrics answers anyone who can reach a non-loopback listener: no token, and the
 * gateway (whose port, or the metrics' own, is on HOST) listens beyond loopback.
 */
export function metricsExposedWithoutToken(config: Pick<ServerConfig, 'host' | 'metricsToken'>): boolean {
  const host = config.host.toLowerCase()
  const loopback = host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
  return config.metricsToken === null && !loopback
}

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: undefined })
  // First, before anything opens: a bad rules file stops the start (ERR_POLICY names the rule).
  const policy = config.policyFile ? openPolicyFile(config.policyFile, { logger }) : null
  const random = createRandomPool()
  let keySets = config.keySets
  if (keySets.length === 0) {
    keySets = [generateKeySet(random)]
    logger.warn(
      { event: 'ephemeral-keyset', keySet: keySets[0]!.id },
      'WSDS_KEYS_FILE is not set: generated an ephemeral key set for this process; only the demo page served here has it',
    )
  }
  // The demo page serves its key set to anyone who asks (/demo/config.json). Keys loaded from
  // WSDS_KEYS_FILE are the app's real ones, so the demo never gets those: it runs on an
  // ephemeral set of its own, which this node accepts as well.
  const demoKeySet = config.demo && config.keySets.length > 0 ? generateKeySet(random, { id: `demo-${toHex(random.bytes(6))}` }) : null
  if (demoKeySet !== null) {
    logger.warn(
      { event: 'demo-with-keys-file', keySet: demoKeySet.id },
      'WSDS_DEMO is on with WSDS_KEYS_FILE: the demo page serves an ephemeral key set of its own, and this node accepts it, so anyone can verify through it; do not run the demo on a production gateway',
    )
  }
  const keyRing = createKeyRing(demoKeySet === null ? keySets : [...keySets, demoKeySet])
  let opened: Awaited<ReturnType<typeof openStore>> | null = null
  try {
    if (options.store === undefined) {
      opened = await openStore(config, (message) => logger.error({ event: 'store-down', error: 'not reachable at start' }, message))
    }
  } catch (err) {
    policy?.close()
    throw err
  }
  const store = options.store ?? opened!.store
  const rateLimiter = options.rateLimiter !== undefined ? options.rateLimiter : (opened?.rateLimiter ?? null)
  // The store says once when it becomes unreachable and once when it is back; requests
  // failing in between are counted in metrics, not logged one by one.
  let storeStatus = 'up'
  store.onStatus((status, error) => {
    storeStatus = status
    if (status === 'down') logger.error({ event: 'store-down', error: String(error ?? 'unknown') }, 'connection store unreachable: failing closed (503)')
    else logger.info({ event: 'store-up' }, 'connection store reachable again')
  })
  // One log line per outage when the 'cached' policy first serves an id from the cache
  // (the counter is authenticator.stats.outageAdmissions, exported as a metric).
  let outageLogged = false
  store.onStatus((status) => {
    if (status === 'up') outageLogged = false
  })
  const authenticator = createAuthenticator({
    store,
    cacheTtlMs: config.authCacheTtlMs,
    storeOutage: config.storeOutage,
    onOutageAdmission: () => {
      if (outageLogged) return
      outageLogged = true
      logger.warn({ event: 'store-outage-cached' }, 'connection store unreachable: admitting ids cached before the outage (WSDS_STORE_OUTAGE=cached)')
    },
  })
  // Durations go straight into prom-client histograms as they happen (core/observer.ts).
  const observer = createPrometheusObserver()
  const front = createFront({
    authenticator,
    observer,
    mode: config.mode,
    bindingWindowMs: config.bindingWindowMs,
    requestMac: nodeRequestMac,
    idRateLimit: config.idRateLimit,
    ...(policy !== null ? { policy, sha256: nodeSha256 } : {}),
  })
  // A client that trickles its request (or upgrade) headers is cut off after 10 s, not the
  // ~90 s that Node's defaults allow (headersTimeout 60 s, checked every 30 s); a whole
  // request gets 5 minutes. Node answers 408 and closes.
  const server = createServer({
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
  })
  // Longer than common load balancer idle timeouts, so the proxy closes idle sockets first.
  server.keepAliveTimeout = 65_000
  // parse5 is an optional peer dependency (docs/packaging.md): without it the default
  // `monitor` runs no engine checks and says so once; `enforce` cannot, and stops the start.
  const engineChecks =
    config.engineChecks === 'off'
      ? undefined
      : await importAdapter(() => import('../engine/parse5.ts'), 'parse5', `WSDS_ENGINE_CHECKS=${config.engineChecks}`).then(
          (m) => m.createEngineChecks(config.engineChecks),
          (err: unknown) => {
            if (config.engineChecks === 'enforce') throw err
            logger.warn({ event: 'engine-checks-off', error: String(err) }, 'engine checks are off: install parse5 to count them (WSDS_ENGINE_CHECKS=monitor)')
            return undefined
          },
        )
  const gateway = attachGateway(server, {
    store,
    keyRing,
    allowedOrigins: config.allowedOrigins,
    path: WS_PATH,
    challengeTimeoutMs: config.challengeTimeoutMs,
    maxPayloadBytes: config.maxPayloadBytes,
    leaseMs: config.leaseMs,
    rateLimiter,
    trustProxy: config.trustProxy,
    binding: config.binding,
    random,
    logger,
    challengeForms: config.challengeForms,
    engineChecks,
    observer,
    rechallengeMs: config.rechallengeMs,
    powPolicy: config.powBits > 0 || config.powMaxBits > 0 ? createPowPolicy({ baseBits: config.powBits, maxBits: Math.max(config.powBits, config.powMaxBits), now: Date.now }) : null,
  })
  const admin = createAdmin({ token: config.adminToken, gateway, store, logger })
  const registry = createMetricsRegistry({ gateway, authenticator, front, observer })
  const proxy = config.upstream === null ? null : createReverseProxy({ upstream: config.upstream, stripPrefix: API_PREFIX, trustProxy: config.trustProxy })
  const demo = config.demo
    ? await import('../demo/handler.ts').then((m) => m.createDemoHandler({ keySet: demoKeySet ?? keyRing.current, wsPath: WS_PATH }))
    : null

  // Behind forward auth, path rules see X-Forwarded-Uri; a proxy that does not send it makes
  // every path look like the auth endpoint, so deny rules on paths never fire. Said once.
  let warnedNoForwardedUri = false
  async function authorize(req: IncomingMessage, res: ServerResponse, forwarded: boolean, onPass: (headers: Record<string, string>) => void) {
    if (forwarded && !warnedNoForwardedUri && policy !== null && policy.current.active && req.headers[FORWARDED_URI_HEADER] === undefined) {
      warnedNoForwardedUri = true
      logger.warn(
        { event: 'policy-no-forwarded-uri', path: config.authPath },
        'forward auth request without X-Forwarded-Uri: policy path rules cannot match; make the proxy send it (deploy/ configurations do)',
      )
    }
    const decision = await decideRequest(front, req, { forwarded, trustProxy: config.trustProxy })
    if (decision.pass) onPass(decision.headers)
    else sendRefusal(req, res, decision)
  }

  const passApi = (req: IncomingMessage, res: ServerResponse) => (headers: Record<string, string>) => {
    if (proxy !== null) return proxy(req, res, headers)
    req.url = (req.url ?? '/').slice(API_PREFIX.length) || '/'
    handleGreeting(req, res)
  }
  // Every X-WSDS-* header on every 204, empty when it does not apply (a rule admitted the
  // request: no connection): a proxy that copies a header the answer lacks may pass on
  // garbage instead (Caddy 2.6's copy_headers leaves its placeholder text).
  const passAuth = (res: ServerResponse) => (headers: Record<string, string>) => {
    // `connectionId` too, set to the verified id (empty when a rule admitted the request): a
    // proxy that copies it onto the request (Traefik's authResponseHeaders) replaces whatever
    // the client sent under that name.
    res.writeHead(204, { ...FORWARD_AUTH_BLANKS, ...headers, [CONNECTION_ID_HEADER]: headers[CONNECTION_ID_RESPONSE_HEADER] ?? '', 'cache-control': 'no-store' })
    res.end()
  }

  // Cross-origin pages (WSDS_CORS_ORIGINS): preflights carry no id, so they are answered before authorization.
  const cors = createCorsHook(config.corsOrigins)

  async function onRequest(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    if (path === API_PREFIX || path.startsWith(API_PREFIX + '/')) return authorize(req, res, false, passApi(req, res))
    if (path === config.authPath) return authorize(req, res, true, passAuth(res))
    if (path === '/healthz') {
      return sendJson(res, 200, JSON.stringify({ status: 'ok', node: gateway.nodeId, store: storeStatus, open: gateway.openConnections }))
    }
    if (path === config.metricsPath && metricsServer === null) return serveMetrics(req, res)
    if (path === ADMIN_RECHALLENGE_PATH && metricsServer === null) return admin.handle(req, res)
    if (path === WS_PATH) return sendJson(res, 426, '{"error":"upgrade-required"}', { upgrade: 'websocket' })
    if (demo !== null && demo(req, res)) return
    sendJson(res, 404, '{"error":"not-found"}')
  }

  async function serveMetrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const token = config.metricsToken
    if (token !== null && !constantTimeEqual(req.headers.authorization ?? '', `Bearer ${token}`)) {
      return sendJson(res, 401, '{"error":"unauthorized"}', { 'www-authenticate': 'Bearer' })
    }
    const text = await registry.metrics()
    res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' })
    res.end(text)
  }

  // Metrics on a port of their own keep them off the public listener entirely.
  const metricsServer =
    config.metricsPort === null
      ? null
      : createServer((req, res) => {
          if (pathOf(req.url ?? '/') === ADMIN_RECHALLENGE_PATH) return admin.handle(req, res)
          if (pathOf(req.url ?? '/') !== config.metricsPath) return sendJson(res, 404, '{"error":"not-found"}')
          serveMetrics(req, res).catch(() => sendJson(res, 500, '{"error":"internal"}'))
        })

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    // One canonical target before routing, policy and signatures (src/core/target.ts); behind
    // forward auth the target that matters is the proxy's original one.
    const target = req.url ?? ''
    const path = pathOf(target)
    const forwardedUri = path === config.authPath ? headerOf(req, FORWARDED_URI_HEADER) : undefined
    if (!checkTarget(target).ok || (forwardedUri !== undefined && !checkTarget(forwardedUri).ok)) {
      req.resume()
      return sendJson(res, 400, BAD_PATH_BODY)
    }
    // The hot path, a protected request whose id is cached, runs without a promise.
    const isApi = path === API_PREFIX || path.startsWith(API_PREFIX + '/')
    if (isApi && cors(req, res)) return
    if (isApi || path === config.authPath) {
      const id = connectionIdOf(req)
      // A bound connection's cached admission needs the request (method, target, signature);
      // reading it only when the request is signed keeps the unbound hot path as it was.
      const signed = req.headers[SIGNATURE_HEADER] !== undefined
      const cached = front.decideCached(id, signed ? accessRequestOf(req, { forwarded: !isApi, trustProxy: config.trustProxy }) : undefined)
      if (cached !== undefined) {
        if (cached.pass) return (isApi ? passApi(req, res) : passAuth(res))(cached.headers)
        return sendRefusal(req, res, cached)
      }
    }
    onRequest(req, res, path).catch((err: unknown) => {
      logger.error({ event: 'request-error', error: String(err) }, 'request failed')
      if (!res.headersSent) sendJson(res, 500, '{"error":"internal"}')
      else res.destroy()
    })
  })
  server.on('clientError', (err: Error & { code?: string }, socket) => {
    // Headers or a request that took too long (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS): 408.
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request'
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`)
    else socket.destroy()
  })

  const closeHttp = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  // A start that fails leaves nothing running: it must not keep the process alive.
  const abortStart = async (err: unknown): Promise<never> => {
    admin.close()
    policy?.close()
    await gateway.close()
    authenticator.close()
    await closeHttp()
    if (options.store === undefined) await store.close()
    throw err
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.host, () => {
      server.off('error', reject)
      resolve()
    })
  }).catch(abortStart)
  const listener: NetServer = server
  const { port } = listener.address() as AddressInfo
  let socketServer: NetServer | null = null
  if (config.socketPath !== null) {
    try {
      // Handing accepted sockets to the HTTP server through its 'connection' event is the
      // documented way to serve one server from several listeners.
      socketServer = await listenUnixSocket((socket) => server.emit('connection', socket), config.socketPath, config.socketMode)
    } catch (err) {
      await abortStart(err)
    }
    if (rateLimiter !== null && !config.trustProxy) {
      logger.warn(
        { event: 'socket-without-client-address', socket: config.socketPath },
        'WSDS_SOCKET connections have no client address: with WSDS_RATE_LIMIT on they share one upgrade limit; behind a proxy set WSDS_TRUST_PROXY=on',
      )
    }
  }
  let metricsUrl: string | null = null
  if (metricsServer !== null) {
    await new Promise<void>((resolve, reject) => {
      metricsServer.once('error', reject)
      metricsServer.listen(config.metricsPort!, config.host, () => resolve())
    })
    const hostName = config.host.includes(':') ? `[${config.host}]` : config.host
    metricsUrl = `http://${hostName}:${(metricsServer.address() as AddressInfo).port}${config.metricsPath}`
  }
  if (metricsExposedWithoutToken(config)) {
    logger.warn(
      { event: 'metrics-without-token', host: config.host, port: config.metricsPort ?? port, path: config.metricsPath },
      'metrics are served on a non-loopback address without WSDS_METRICS_TOKEN: anyone who reaches it can read them; set a token, or WSDS_METRICS_PORT with a private HOST',
    )
  }
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host
  const url = `http://${hostForUrl}:${port}`
  logger.info(
    {
      event: 'listening',
      url,
      ws: `${url.replace('http', 'ws')}${WS_PATH}`,
      origins: config.allowedOrigins,
      keySets: keyRing.sets.map((k) => k.id),
      store: opened?.kind ?? 'custom',
      mode: front.mode,
      ...(policy !== null ? { policy: policy.path, rules: policy.current.rules.length } : {}),
      metrics: metricsUrl ?? `${url}${config.metricsPath}`,
      node: gateway.nodeId,
      ...(config.socketPath !== null ? { socket: config.socketPath } : {}),
    },
    'WSDS gateway listening',
  )
  return {
    server,
    listeners: socketServer === null ? [listener] : [listener, socketServer],
    gateway,
    store,
    authenticator,
    front,
    policy,
    logger,
    currentKeySet: keyRing.current,
    port,
    url,
    metricsUrl: metricsUrl ?? `${url}${config.metricsPath}`,
    async close() {
      admin.close()
      policy?.close()
      await gateway.close()
      authenticator.close()
      if (metricsServer !== null) await new Promise((resolve) => metricsServer.close(resolve))
      // Stop accepting (which also removes the socket file: libuv unlinks what it bound). The
      // socket listener's callback waits for the connections it accepted, closed just below.
      const socketClosed = socketServer === null ? Promise.resolve() : new Promise((resolve) => socketServer.close(resolve))
      await closeHttp()
      await socketClosed
      await store.close()
    },
  }
}
