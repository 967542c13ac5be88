/**
 * startServer's named parts on their own (src/server/server.ts, router.ts, listen.ts): the
 * router answered without a listening server, the shutdown order, the start's clean-up when
 * a listener fails, and the pieces assembled from the configuration. The whole server over
 * real sockets is test/server.test.ts.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { after, describe, it } from 'node:test'
import { pino } from 'pino'
import type { ConnectionRecord, Store, StoreStatus } from '../src/core/store.ts'
import { loadConfig, type ServerConfig } from '../src/server/config.ts'
import { httpUrl, listenTcp, shutdown, type ServerParts } from '../src/server/listen.ts'
import { WS_PATH, pathOf } from '../src/server/router.ts'
import { assembleServer, gatewayOptions, loadEngineChecks, openBackend, prepareKeyRing, startServer, type AssembledServer } from '../src/server/server.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { createRandomPool } from '../src/core/random.ts'
import { generateKeySet } from '../src/core/keyset.ts'
import { testKeySet } from './helpers/server.ts'

const silent = pino({ level: 'silent' })
const ORIGIN = 'http://app.wsds.test'
const ID = 'conn-0123456789abcdef'

function configOf(env: Record<string, string> = {}, over: Partial<ServerConfig> = {}): ServerConfig {
  const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: ORIGIN, WSDS_RATE_LIMIT: 'off', WSDS_DEMO: 'off', ...env })
  return { ...base, keySets: [testKeySet], ...over }
}

/** What a handler wrote: status, headers (lower-case names) and body. */
interface Answer {
  status: number
  headers: Record<string, string | number>
  body: string
}

/**
 * A request as node:http hands it over (a readable body, url, method, headers, socket
 * address) and a response that records what the handler writes, as node:http would send it.
 */
function exchange(url: string, init: { method?: string; headers?: Record<string, string> } = {}) {
  const req = Object.assign(Readable.from([]), {
    url,
    method: init.method ?? 'GET',
    headers: Object.fromEntries(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    socket: { remoteAddress: '127.0.0.1' },
  }) as unknown as IncomingMessage
  let settle: (answer: Answer) => void
  const answered = new Promise<Answer>((resolve) => (settle = resolve))
  const headers: Record<string, string | number> = {}
  let status = 0
  const res: { headersSent: boolean; [method: string]: unknown } = {
    headersSent: false,
    setHeader(name: string, value: string | number) {
      headers[name.toLowerCase()] = value
    },
    writeHead(code: number, more: Record<string, string | number> = {}) {
      status = code
      for (const [name, value] of Object.entries(more)) headers[name.toLowerCase()] = value
      res.headersSent = true
      return res
    },
    end(body?: string | Buffer) {
      settle({ status, headers, body: body === undefined ? '' : String(body) })
    },
    destroy() {
      settle({ status: -1, headers, body: '' })
    },
  }
  return { req, res: res as unknown as ServerResponse, answered }
}

const verifiedRecord = (): ConnectionRecord => ({
  connectionId: ID,
  status: 'verified',
  origin: ORIGIN,
  createdAt: Date.now(),
  verifiedAt: Date.now(),
  expiresAt: Date.now() + 60_000,
})

describe('the request router, without a listening server', () => {
  const assembled: AssembledServer[] = []
  after(async () => {
    for (const app of assembled) await shutdown(app.parts, { closeStore: true })
  })
  async function routerFor(env: Record<string, string> = {}): Promise<AssembledServer> {
    const app = await assembleServer(configOf(env), {}, silent)
    assembled.push(app)
    return app
  }
  const ask = (app: AssembledServer, url: string, init?: Parameters<typeof exchange>[1]) => {
    const { req, res, answered } = exchange(url, init)
    app.router.handle(req, res)
    return answered
  }

  it('answers /healthz with the node, the store status and the open sockets', async () => {
    const app = await routerFor()
    const answer = await ask(app, '/healthz')
    assert.equal(answer.status, 200)
    assert.deepEqual(JSON.parse(answer.body), { status: 'ok', node: app.gateway.nodeId, store: 'up', open: 0 })
  })

  it('answers a plain request for the WebSocket path with 426 and Upgrade: websocket', async () => {
    const answer = await ask(await routerFor(), WS_PATH)
    assert.equal(answer.status, 426)
    assert.equal(answer.headers.upgrade, 'websocket')
  })

  it('answers an unknown path with 404, and a malformed target with 400 before any route', async () => {
    const app = await routerFor()
    assert.equal((await ask(app, '/nothing-here')).status, 404)
    const bad = await ask(app, '/api/%zz')
    assert.equal(bad.status, 400)
  })

  it('refuses /api and forward auth without a connectionId (401), and admits a verified one', async () => {
    const app = await routerFor()
    assert.equal((await ask(app, '/api/greeting?who=X')).status, 401)
    assert.equal((await ask(app, '/wsds/auth')).status, 401)
    await app.backend.store.put(verifiedRecord(), { ttlMs: 60_000 })
    const api = await ask(app, '/api/greeting?who=X', { headers: { connectionId: ID } })
    assert.equal(api.status, 200)
    assert.deepEqual(JSON.parse(api.body), { greeting: 'Hello, X!' })
    // The second request for the id is answered from the authenticator's cache, synchronously.
    assert.equal((await ask(app, '/api/greeting?who=Y', { headers: { connectionId: ID } })).status, 200)
    const auth = await ask(app, '/wsds/auth', { headers: { connectionId: ID, 'x-forwarded-uri': '/api/x' } })
    assert.equal(auth.status, 204)
    assert.equal(auth.headers.connectionid, ID)
    assert.equal(auth.headers['cache-control'], 'no-store')
  })

  it('serves /metrics on the public listener when there is no metrics port, behind its token when one is set', async () => {
    const open = await ask(await routerFor(), '/metrics')
    assert.equal(open.status, 200)
    assert.match(open.body, /wsds_upgrades_total/)
    const guarded = await routerFor({ WSDS_METRICS_TOKEN: 'sekret-token-123' })
    assert.equal((await ask(guarded, '/metrics')).status, 401)
    assert.equal((await ask(guarded, '/metrics', { headers: { authorization: 'Bearer sekret-token-123' } })).status, 200)
  })

  it('keeps /metrics and the admin endpoint off the public listener when they have their own port', async () => {
    const app = await routerFor({ WSDS_METRICS_PORT: '0' })
    assert.equal((await ask(app, '/metrics')).status, 404)
    assert.equal((await ask(app, '/wsds/admin/rechallenge', { method: 'POST' })).status, 404)
    const onPort = (url: string) => {
      const { req, res, answered } = exchange(url)
      app.router.handleMetricsPort(req, res)
      return answered
    }
    assert.equal((await onPort('/metrics')).status, 200)
    assert.equal((await onPort('/healthz')).status, 404)
  })

  it('answers a CORS preflight from an allowed origin before authorization', async () => {
    const app = await routerFor({ WSDS_CORS_ORIGINS: ORIGIN })
    const answer = await ask(app, '/api/greeting', {
      method: 'OPTIONS',
      headers: { origin: ORIGIN, 'access-control-request-method': 'GET', 'access-control-request-headers': 'connectionid' },
    })
    assert.equal(answer.status, 204)
    assert.equal(answer.headers['access-control-allow-origin'], ORIGIN)
  })

  it('splits a path from its query', () => {
    assert.equal(pathOf('/api/x?y=1?z'), '/api/x')
    assert.equal(pathOf('/api/x'), '/api/x')
  })
})

describe('the shutdown sequence', () => {
  it('closes the gateway, then the metrics port, the listeners and their connections, and the store last', async () => {
    const order: string[] = []
    const note = (name: string) => () => void order.push(name)
    const server = createServer()
    const metricsServer = createServer()
    const socketServer = createNetServer()
    await listenTcp(server, 0, '127.0.0.1')
    await listenTcp(metricsServer, 0, '127.0.0.1')
    await listenTcp(socketServer, 0, '127.0.0.1')
    server.on('close', note('server'))
    metricsServer.on('close', note('metrics'))
    socketServer.on('close', note('socket'))
    // An idle client connection: shutdown must not wait for it to go away by itself.
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1')
    await once(socket, 'connect')
    socket.on('error', () => {})
    const socketClosed = once(socket, 'close')
    const parts: ServerParts = {
      admin: { close: note('admin') },
      policy: { close: note('policy') },
      gateway: { close: async () => void order.push('gateway') },
      authenticator: { close: note('authenticator') },
      metricsServer,
      socketServer,
      server,
      store: { close: async () => void order.push('store') },
    }
    await shutdown(parts, { closeStore: true })
    assert.deepEqual(order.slice(0, 5), ['admin', 'policy', 'gateway', 'authenticator', 'metrics'])
    assert.deepEqual(new Set(order.slice(5, 7)), new Set(['server', 'socket']))
    assert.equal(order[7], 'store')
    assert.equal(order.length, 8)
    await socketClosed
  })

  it('leaves a store the caller passed in open when asked to', async () => {
    const closed: string[] = []
    const server = createServer()
    const parts: ServerParts = {
      admin: { close() {} },
      policy: null,
      gateway: { close: async () => {} },
      authenticator: { close() {} },
      metricsServer: null,
      socketServer: null,
      server,
      store: { close: async () => void closed.push('store') },
    }
    await shutdown(parts, { closeStore: false })
    assert.deepEqual(closed, [])
  })
})

describe('a start that fails', () => {
  it('releases the TCP port and rejects with the listen error when the metrics port is taken', async () => {
    const taken = createServer()
    const metricsPort = await listenTcp(taken, 0, '127.0.0.1')
    const free = createServer()
    const port = await listenTcp(free, 0, '127.0.0.1')
    await new Promise((resolve) => free.close(resolve))
    try {
      await assert.rejects(startServer(configOf({}, { host: '127.0.0.1', port, metricsPort }), { logger: silent }), { code: 'EADDRINUSE' })
      // The public port is free again: nothing of the failed start is left listening.
      const again = createServer()
      assert.equal(await listenTcp(again, port, '127.0.0.1'), port)
      await new Promise((resolve) => again.close(resolve))
    } finally {
      await new Promise((resolve) => taken.close(resolve))
    }
  })

  it('leaves a store it was given open when the TCP port is taken', async () => {
    const taken = createServer()
    const port = await listenTcp(taken, 0, '127.0.0.1')
    const store = createMemoryStore()
    let storeClosed = false
    const watched: Store = { ...store, put: store.put, get: store.get, close: async () => void (storeClosed = true) }
    try {
      await assert.rejects(startServer(configOf({}, { host: '127.0.0.1', port }), { logger: silent, store: watched }), { code: 'EADDRINUSE' })
      assert.equal(storeClosed, false)
    } finally {
      await store.close()
      await new Promise((resolve) => taken.close(resolve))
    }
  })
})

describe('the parts assembled from the configuration', () => {
  it('generates one ephemeral key set, and says so, when no keys file is given', () => {
    const warnings: string[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line).event) })
    const { keyRing, demoKeySet } = prepareKeyRing({ keySets: [], demo: false }, createRandomPool(), logger)
    assert.equal(keyRing.sets.length, 1)
    assert.equal(demoKeySet, null)
    assert.deepEqual(warnings, ['ephemeral-keyset'])
  })

  it('gives the demo a key set of its own next to the keys file, and the ring accepts both', () => {
    const own = generateKeySet(createRandomPool(), { id: 'own' })
    const { keyRing, demoKeySet } = prepareKeyRing({ keySets: [own], demo: true }, createRandomPool(), silent)
    assert.ok(demoKeySet !== null && demoKeySet.id.startsWith('demo-'))
    assert.deepEqual(keyRing.sets.map((k) => k.id), ['own', demoKeySet.id])
    assert.equal(keyRing.current.id, 'own')
  })

  it('takes a store passed in as not its own, and tracks its reported status for /healthz', async () => {
    const inner = createMemoryStore()
    const listeners: ((status: StoreStatus, error?: unknown) => void)[] = []
    const store: Store = { ...inner, put: inner.put, get: inner.get, onStatus: (fn) => (listeners.push(fn), () => {}) }
    const backend = await openBackend(configOf(), { store }, silent)
    assert.equal(backend.owned, false)
    assert.equal(backend.kind, 'custom')
    assert.equal(backend.rateLimiter, null)
    assert.equal(backend.status(), 'up')
    for (const fn of listeners) fn('down', new Error('gone'))
    assert.equal(backend.status(), 'down')
    for (const fn of listeners) fn('up')
    assert.equal(backend.status(), 'up')
    await inner.close()
  })

  it('opens the memory store the default configuration names, as its own', async () => {
    const backend = await openBackend(configOf(), {}, silent)
    assert.equal(backend.owned, true)
    assert.equal(backend.kind, 'memory')
    await backend.store.close()
  })

  it('gives the gateway a proof-of-work policy only when a difficulty is configured', () => {
    const deps = { store: createMemoryStore(), keyRing: prepareKeyRing({ keySets: [testKeySet], demo: false }, createRandomPool(), silent).keyRing, rateLimiter: null, random: createRandomPool(), logger: silent, engineChecks: undefined }
    assert.equal(gatewayOptions(configOf(), deps).powPolicy, null)
    const withPow = gatewayOptions(configOf({}, { powBits: 8, powMaxBits: 0 }), deps)
    assert.ok(withPow.powPolicy !== null && withPow.powPolicy !== undefined)
    assert.equal(withPow.path, WS_PATH)
    void deps.store.close()
  })

  it('loads engine checks only when WSDS_ENGINE_CHECKS asks for them', async () => {
    assert.equal(await loadEngineChecks({ engineChecks: 'off' }, silent), undefined)
    // parse5 is a dev dependency here, so monitor mode gets its checks.
    const checks = await loadEngineChecks({ engineChecks: 'monitor' }, silent)
    assert.ok(checks !== undefined)
  })

  it('writes IPv6 hosts in brackets in URLs', () => {
    assert.equal(httpUrl('::1', 8080), 'http://[::1]:8080')
    assert.equal(httpUrl('127.0.0.1', 8080), 'http://127.0.0.1:8080')
  })
})
