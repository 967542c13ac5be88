/**
 * The standalone gateway process: one node:http server carrying the WebSocket endpoint, the
 * authenticator in front of the protected service, forward auth, health, metrics and the
 * demo, on the TCP port and optionally a Unix socket. Everything here is wiring; decisions
 * live in core.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Server as NetServer } from 'node:net'
import { pino, type Logger } from 'pino'
import { createAuthenticator, type Authenticator } from '../core/authenticator.ts'
import { createKeyRing } from '../core/keyring.ts'
import { generateKeySet, type KeySet } from '../core/keyset.ts'
import { createRandomPool } from '../core/random.ts'
import type { Store } from '../core/store.ts'
import { handleGreeting } from '../demo/greeting.ts'
import { attachGateway, type Gateway } from '../gateway/gateway.ts'
import type { RateLimiter } from '../core/rate-limit.ts'
import { constantTimeEqual } from '../core/encoding.ts'
import { createFront, type Front } from '../core/front.ts'
import { connectionIdOf, decideRequest, sendJson, sendRefusal } from '../proxy/http-auth.ts'
import { createCorsHook } from '../proxy/cors.ts'
import { createReverseProxy } from '../proxy/reverse-proxy.ts'
import { openStore } from './open-store.ts'
import type { ServerConfig } from './config.ts'
import { createMetricsRegistry } from './metrics.ts'
import { listenUnixSocket } from './unix-socket.ts'

export interface RunningServer {
  /** The HTTP server: it listens on the TCP port and is handed the Unix socket's connections. */
  server: Server
  /** What accepts connections: the TCP port (the server itself), then the Unix socket when there is one. */
  listeners: NetServer[]
  gateway: Gateway
  store: Store
  authenticator: Authenticator
  front: Front
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
const WS_PATH = '/wsds'

function pathOf(url: string): string {
  const q = url.indexOf('?')
  return q === -1 ? url : url.slice(0, q)
}

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? pino({ level: config.logLevel, base: undefined })
  const random = createRandomPool()
  let keySets = config.keySets
  if (keySets.length === 0) {
    keySets = [generateKeySet(random)]
    logger.warn(
      { event: 'ephemeral-keyset', keySet: keySets[0]!.id },
      'WSDS_KEYS_FILE is not set: generated an ephemeral key set for this process; only the demo page served here has it',
    )
  }
  const keyRing = createKeyRing(keySets)
  const opened =
    options.store === undefined
      ? await openStore(config, (message) => logger.error({ event: 'store-down', error: 'not reachable at start' }, message))
      : null
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
  const authenticator = createAuthenticator({ store, cacheTtlMs: config.authCacheTtlMs })
  const front = createFront({ authenticator, mode: config.mode })
  const server = createServer()
  // Longer than common load balancer idle timeouts, so the proxy closes idle sockets first.
  server.keepAliveTimeout = 65_000
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
    random,
    logger,
  })
  const registry = createMetricsRegistry({ gateway, authenticator, front })
  const proxy = config.upstream === null ? null : createReverseProxy({ upstream: config.upstream, stripPrefix: API_PREFIX })
  const demo = config.demo
    ? await import('../demo/handler.ts').then((m) => m.createDemoHandler({ keySet: keyRing.current, wsPath: WS_PATH }))
    : null

  async function authorize(req: IncomingMessage, res: ServerResponse, forwarded: boolean, onPass: (headers: Record<string, string>) => void) {
    const decision = await decideRequest(front, req, { forwarded, trustProxy: config.trustProxy })
    if (decision.pass) onPass(decision.headers)
    else sendRefusal(req, res, decision)
  }

  const passApi = (req: IncomingMessage, res: ServerResponse) => (headers: Record<string, string>) => {
    if (proxy !== null) return proxy(req, res, headers)
    req.url = (req.url ?? '/').slice(API_PREFIX.length) || '/'
    handleGreeting(req, res)
  }
  const passAuth = (res: ServerResponse) => (headers: Record<string, string>) => {
    res.writeHead(204, { ...headers, 'cache-control': 'no-store' })
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
          if (pathOf(req.url ?? '/') !== config.metricsPath) return sendJson(res, 404, '{"error":"not-found"}')
          serveMetrics(req, res).catch(() => sendJson(res, 500, '{"error":"internal"}'))
        })

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = pathOf(req.url ?? '/')
    // The hot path, a protected request whose id is cached, runs without a promise.
    const isApi = path === API_PREFIX || path.startsWith(API_PREFIX + '/')
    if (isApi && cors(req, res)) return
    if (isApi || path === config.authPath) {
      const cached = front.decideCached(connectionIdOf(req))
      if (cached !== undefined) return (isApi ? passApi(req, res) : passAuth(res))(cached.headers)
    }
    onRequest(req, res, path).catch((err: unknown) => {
      logger.error({ event: 'request-error', error: String(err) }, 'request failed')
      if (!res.headersSent) sendJson(res, 500, '{"error":"internal"}')
      else res.destroy()
    })
  })
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
    else socket.destroy()
  })

  const closeHttp = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  // A start that fails leaves nothing running: it must not keep the process alive.
  const abortStart = async (err: unknown): Promise<never> => {
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
    logger,
    currentKeySet: keyRing.current,
    port,
    url,
    metricsUrl: metricsUrl ?? `${url}${config.metricsPath}`,
    async close() {
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
