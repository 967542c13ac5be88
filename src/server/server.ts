/**
 * The standalone gateway process: one node:http server carrying the WebSocket endpoint, the
 * authenticator in front of the protected service, forward auth, health, metrics and the
 * demo, on the TCP port and optionally a Unix socket. Everything here is wiring; decisions
 * live in core. startServer runs the named parts below in order: open what the server
 * needs (assembleServer), listen (listenAll), report (warnAtStart, logListening); routes are
 * in router.ts, listeners and the shutdown order in listen.ts.
 */
import type { Server } from 'node:http'
import type { Server as NetServer } from 'node:net'
import { pino, type Logger } from 'pino'
import { createAuthenticator, type Authenticator } from '../core/authenticator.ts'
import { toHex } from '../core/encoding.ts'
import type { EngineChecks } from '../core/engine-check.ts'
import { createFront, type Front } from '../core/front.ts'
import { createKeyRing, type KeyRing } from '../core/keyring.ts'
import { generateKeySet, type KeySet } from '../core/keyset.ts'
import { createPowPolicy } from '../core/pow-policy.ts'
import { createRandomPool, type RandomSource } from '../core/random.ts'
import type { RateLimiter } from '../core/rate-limit.ts'
import type { Store } from '../core/store.ts'
import { nodeRequestMac } from '../crypto/node-binding.ts'
import type { DemoHandler } from '../demo/handler.ts'
import { attachGateway, type Gateway, type GatewayOptions } from '../gateway/gateway.ts'
import { createReverseProxy } from '../proxy/reverse-proxy.ts'
import { importAdapter, openStore, type OpenedStore } from '../stores/open-store.ts'
import { createAdmin } from './admin.ts'
import type { ServerConfig } from './config.ts'
import { createHttpServer, httpUrl, listenMetricsPort, listenSocket, listenTcp, shutdown, type ServerParts } from './listen.ts'
import { createMetricsRegistry, createPrometheusObserver } from './metrics.ts'
import type { MetricsObserver } from '../core/observer.ts'
import { nodeSha256, openPolicyFile, type PolicyFile } from './policy-file.ts'
import { API_PREFIX, WS_PATH, createRequestRouter, type RequestRouter } from './router.ts'

export { HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from './listen.ts'

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
  const app = await assembleServer(config, options, logger)
  const { parts } = app
  // A start that fails leaves nothing running: it must not keep the process alive.
  const port = await listenAll(app, config).catch(async (err: unknown) => {
    await shutdown(parts, { closeStore: app.backend.owned })
    throw err
  })
  const url = httpUrl(config.host, port)
  const metricsUrl = parts.metricsServer === null ? `${url}${config.metricsPath}` : `${httpUrl(config.host, listenerPort(parts.metricsServer))}${config.metricsPath}`
  warnAtStart(config, app, logger, port)
  logListening(config, app, logger, { url, metricsUrl })
  return {
    server: parts.server,
    listeners: parts.socketServer === null ? [parts.server] : [parts.server, parts.socketServer],
    gateway: app.gateway,
    store: app.backend.store,
    authenticator: app.authenticator,
    front: app.front,
    policy: app.policy,
    logger,
    currentKeySet: app.keyRing.current,
    port,
    url,
    metricsUrl,
    close: () => shutdown(parts, { closeStore: true }),
  }
}

/** Everything a server is made of before it listens; what assembleServer returns. */
export interface AssembledServer {
  /** What shutdown closes; listenAll fills in the Unix socket and metrics listeners. */
  parts: ServerParts
  backend: Backend
  policy: PolicyFile | null
  keyRing: KeyRing
  authenticator: Authenticator
  front: Front
  gateway: Gateway
  router: RequestRouter
}

/**
 * Opens and builds every part of the server, not listening yet: rules file, keys, store,
 * engine checks, demo, authenticator and front, gateway, admin, metrics, the router on the
 * HTTP server. A failure closes what was already opened and rethrows.
 */
export async function assembleServer(config: ServerConfig, options: StartOptions, logger: Logger): Promise<AssembledServer> {
  // First, before anything opens: a bad rules file stops the start (ERR_POLICY names the rule).
  const policy = config.policyFile ? openPolicyFile(config.policyFile, { logger }) : null
  const random = createRandomPool()
  const { keyRing, demoKeySet } = prepareKeyRing(config, random, logger)
  let backend: Backend | undefined
  let engineChecks: EngineChecks | undefined
  let demo: DemoHandler | null
  try {
    backend = await openBackend(config, options, logger)
    engineChecks = await loadEngineChecks(config, logger)
    demo = config.demo ? await loadDemo(demoKeySet ?? keyRing.current) : null
  } catch (err) {
    policy?.close()
    if (backend?.owned) await backend.store.close()
    throw err
  }
  const { store, rateLimiter } = backend
  // Durations go straight into prom-client histograms as they happen (core/observer.ts).
  const observer = createPrometheusObserver()
  const { authenticator, front } = createAccessControl(config, store, policy, logger, observer)
  const server = createHttpServer()
  const gateway = attachGateway(server, gatewayOptions(config, { store, keyRing, rateLimiter, random, logger, engineChecks, observer }))
  const admin = createAdmin({ token: config.adminToken, gateway, store, logger })
  const router = createRequestRouter({
    config,
    front,
    gateway,
    admin,
    metrics: createMetricsRegistry({ gateway, authenticator, front, observer }),
    proxy: config.upstream === null ? null : createReverseProxy({ upstream: config.upstream, stripPrefix: API_PREFIX, trustProxy: config.trustProxy }),
    demo,
    policy,
    storeStatus: backend.status,
    logger,
  })
  server.on('request', router.handle)
  const parts: ServerParts = { admin, policy, gateway, authenticator, metricsServer: null, socketServer: null, server, store }
  return { parts, backend, policy, keyRing, authenticator, front, gateway, router }
}

/**
 * The key ring the gateway accepts. Without WSDS_KEYS_FILE it is one ephemeral set. The demo
 * page serves its key set to anyone who asks (/demo/config.json); keys loaded from
 * WSDS_KEYS_FILE are the app's real ones, so the demo never gets those: it runs on an
 * ephemeral set of its own, which this node accepts as well.
 */
export function prepareKeyRing(
  config: Pick<ServerConfig, 'keySets' | 'demo'>,
  random: RandomSource,
  logger: Logger,
): { keyRing: KeyRing; demoKeySet: KeySet | null } {
  let keySets = config.keySets
  if (keySets.length === 0) {
    keySets = [generateKeySet(random)]
    logger.warn(
      { event: 'ephemeral-keyset', keySet: keySets[0]!.id },
      'WSDS_KEYS_FILE is not set: generated an ephemeral key set for this process; only the demo page served here has it',
    )
  }
  const demoKeySet = config.demo && config.keySets.length > 0 ? generateKeySet(random, { id: `demo-${toHex(random.bytes(6))}` }) : null
  if (demoKeySet !== null) {
    logger.warn(
      { event: 'demo-with-keys-file', keySet: demoKeySet.id },
      'WSDS_DEMO is on with WSDS_KEYS_FILE: the demo page serves an ephemeral key set of its own, and this node accepts it, so anyone can verify through it; do not run the demo on a production gateway',
    )
  }
  return { keyRing: createKeyRing(demoKeySet === null ? keySets : [...keySets, demoKeySet]), demoKeySet }
}

/** The connection store and upgrade limiter, and whether this server owns (so closes) them. */
export interface Backend {
  store: Store
  rateLimiter: RateLimiter | null
  /** What the configuration opened ('custom': passed in as StartOptions.store). */
  kind: OpenedStore['kind'] | 'custom'
  /** False when the store was passed in: a failed start leaves it open. */
  owned: boolean
  /** The store's last reported status ('up' or 'down'), for /healthz. */
  status(): string
}

/** Opens the configured store (or takes the one passed in) and logs its outages. */
export async function openBackend(config: ServerConfig, options: StartOptions, logger: Logger): Promise<Backend> {
  const opened =
    options.store === undefined
      ? await openStore(config, (message) => logger.error({ event: 'store-down', error: 'not reachable at start' }, message))
      : null
  const store = options.store ?? opened!.store
  // The store says once when it becomes unreachable and once when it is back; requests
  // failing in between are counted in metrics, not logged one by one.
  let status = 'up'
  store.onStatus((next, error) => {
    status = next
    if (next === 'down') logger.error({ event: 'store-down', error: String(error ?? 'unknown') }, 'connection store unreachable: failing closed (503)')
    else logger.info({ event: 'store-up' }, 'connection store reachable again')
  })
  return {
    store,
    rateLimiter: options.rateLimiter !== undefined ? options.rateLimiter : (opened?.rateLimiter ?? null),
    kind: opened?.kind ?? 'custom',
    owned: opened !== null,
    status: () => status,
  }
}

/** The authenticator over the store, and the front (mode, binding, rules) over it. */
export function createAccessControl(
  config: Pick<ServerConfig, 'authCacheTtlMs' | 'storeOutage' | 'mode' | 'bindingWindowMs' | 'idRateLimit'>,
  store: Store,
  policy: PolicyFile | null,
  logger: Logger,
  observer?: MetricsObserver,
): { authenticator: Authenticator; front: Front } {
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
  const front = createFront({
    authenticator,
    ...(observer !== undefined ? { observer } : {}),
    mode: config.mode,
    bindingWindowMs: config.bindingWindowMs,
    requestMac: nodeRequestMac,
    idRateLimit: config.idRateLimit,
    ...(policy !== null ? { policy, sha256: nodeSha256 } : {}),
  })
  return { authenticator, front }
}

/**
 * The engine checks WSDS_ENGINE_CHECKS asks for. parse5 is an optional peer dependency
 * (docs/packaging.md): without it the default `monitor` runs no engine checks and says so
 * once; `enforce` cannot, and stops the start.
 */
export async function loadEngineChecks(config: Pick<ServerConfig, 'engineChecks'>, logger: Logger): Promise<EngineChecks | undefined> {
  if (config.engineChecks === 'off') return undefined
  let engine: typeof import('../engine/parse5.ts')
  try {
    engine = await importAdapter(() => import('../engine/parse5.ts'), 'parse5', `WSDS_ENGINE_CHECKS=${config.engineChecks}`)
  } catch (err) {
    if (config.engineChecks === 'enforce') throw err
    logger.warn({ event: 'engine-checks-off', error: String(err) }, 'engine checks are off: install parse5 to count them (WSDS_ENGINE_CHECKS=monitor)')
    return undefined
  }
  return engine.createEngineChecks(config.engineChecks)
}

/** The demo page (WSDS_DEMO), loaded only when asked for: it reads and bundles its files. */
async function loadDemo(keySet: KeySet): Promise<DemoHandler> {
  const { createDemoHandler } = await import('../demo/handler.ts')
  return createDemoHandler({ keySet, wsPath: WS_PATH })
}

/** The gateway's options from the configuration and the parts opened before it. */
export function gatewayOptions(
  config: ServerConfig,
  deps: { store: Store; keyRing: KeyRing; rateLimiter: RateLimiter | null; random: RandomSource; logger: Logger; engineChecks: EngineChecks | undefined; observer?: MetricsObserver },
): GatewayOptions {
  return {
    ...deps,
    allowedOrigins: config.allowedOrigins,
    path: WS_PATH,
    challengeTimeoutMs: config.challengeTimeoutMs,
    maxPayloadBytes: config.maxPayloadBytes,
    leaseMs: config.leaseMs,
    trustProxy: config.trustProxy,
    binding: config.binding,
    challengeForms: config.challengeForms,
    rechallengeMs: config.rechallengeMs,
    powPolicy:
      config.powBits > 0 || config.powMaxBits > 0
        ? createPowPolicy({ baseBits: config.powBits, maxBits: Math.max(config.powBits, config.powMaxBits), now: Date.now })
        : null,
  }
}

/**
 * Listens on the TCP port, then the Unix socket and the metrics port when configured; each
 * listener is recorded in `app.parts` as it opens, so a failure's shutdown closes it.
 * Resolves with the TCP port bound.
 */
export async function listenAll(app: AssembledServer, config: Pick<ServerConfig, 'port' | 'host' | 'socketPath' | 'socketMode' | 'metricsPort'>): Promise<number> {
  const { parts } = app
  const port = await listenTcp(parts.server, config.port, config.host)
  if (config.socketPath !== null) parts.socketServer = await listenSocket(parts.server, config.socketPath, config.socketMode)
  if (config.metricsPort !== null) parts.metricsServer = await listenMetricsPort(app.router.handleMetricsPort, config.metricsPort, config.host)
  return port
}

const listenerPort = (listener: NetServer): number => (listener.address() as { port: number }).port

/** Warnings about a configuration that works but exposes or shares more than it seems to. */
function warnAtStart(config: ServerConfig, app: AssembledServer, logger: Logger, port: number): void {
  if (config.socketPath !== null && app.backend.rateLimiter !== null && !config.trustProxy) {
    logger.warn(
      { event: 'socket-without-client-address', socket: config.socketPath },
      'WSDS_SOCKET connections have no client address: with WSDS_RATE_LIMIT on they share one upgrade limit; behind a proxy set WSDS_TRUST_PROXY=on',
    )
  }
  if (metricsExposedWithoutToken(config)) {
    logger.warn(
      { event: 'metrics-without-token', host: config.host, port: config.metricsPort ?? port, path: config.metricsPath },
      'metrics are served on a non-loopback address without WSDS_METRICS_TOKEN: anyone who reaches it can read them; set a token, or WSDS_METRICS_PORT with a private HOST',
    )
  }
}

function logListening(config: ServerConfig, app: AssembledServer, logger: Logger, at: { url: string; metricsUrl: string }): void {
  const { policy } = app
  logger.info(
    {
      event: 'listening',
      url: at.url,
      ws: `${at.url.replace('http', 'ws')}${WS_PATH}`,
      origins: config.allowedOrigins,
      keySets: app.keyRing.sets.map((k) => k.id),
      store: app.backend.kind,
      mode: app.front.mode,
      ...(policy !== null ? { policy: policy.path, rules: policy.current.rules.length } : {}),
      metrics: at.metricsUrl,
      node: app.gateway.nodeId,
      ...(config.socketPath !== null ? { socket: config.socketPath } : {}),
    },
    'WSDS gateway listening',
  )
}
