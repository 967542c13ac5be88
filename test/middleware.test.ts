/**
 * Framework middleware (`wsds/express`, `wsds/fastify`, `wsds/hono`), each as a real app of
 * its framework on loopback, next to a real WSDS gateway sharing its store: the memory store
 * in one process, and a private redis-server (the app opening it by `storeUrl`). One suite,
 * run per framework (crossws `wsTests()`), so the three cannot drift apart.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { serve } from '@hono/node-server'
import express from 'express'
import Fastify from 'fastify'
import { Hono, type Context } from 'hono'
import { Redis } from 'ioredis'
import { isWsdsError } from '../src/core/errors.ts'
import { createKeyRing } from '../src/core/keyring.ts'
import type { Store } from '../src/core/store.ts'
import { wsds as expressWsds, type WsdsExpressOptions } from '../src/middleware/express.ts'
import { wsds as fastifyWsds, type WsdsFastifyOptions } from '../src/middleware/fastify.ts'
import { wsds as honoWsds, type WsdsEnv, type WsdsHonoOptions } from '../src/middleware/hono.ts'
import { attachGateway, type Gateway } from '../src/gateway/gateway.ts'
import type { OpenStoreModule, WsdsHandle } from '../src/middleware/shared.ts'
import * as openStoreModule from '../src/stores/open-store.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { connectRedis, createRedisStore } from '../src/stores/redis.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { requireBinary } from './helpers/services.ts'
import { openSocket, verifiedHandshake } from './helpers/ws-client.ts'

// shared.ts declares what it uses of open-store.ts instead of importing it (to keep Node's
// types out of the Hono adapter); this line stops compiling if the two disagree.
const _openStoreAgrees: OpenStoreModule = openStoreModule
void _openStoreAgrees

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const redisBin = requireBinary('redis-server')
const CUSTOM_HEADER = 'X-Connection-Id'

type Options = Record<string, unknown>

/** What every app's `GET /api/echo` answers: what its handler saw. */
interface Echo {
  wsds: { connectionId: string; origin: string; verifiedAt: number; verdict: string } | null
  verdict: string | null
  forwardedId: string | null
  forwardedOrigin: string | null
}

interface RunningApp {
  url: string
  /** The app's own node:http server. */
  server: Server
  handle: WsdsHandle
  /** Stops the app the framework's way, closing the middleware with it. */
  close(): Promise<void>
}

interface Framework {
  name: string
  /**
   * Starts a real app on 127.0.0.1:0: the middleware over /api, `GET /api/echo` answering an
   * `Echo`, `GET /open` unprotected. `customReject` installs an onReject that answers 403
   * itself for a missing id and leaves every other refusal to the default.
   */
  start(options: Options, customReject?: boolean): Promise<RunningApp>
  /** Creates the middleware as an app would; rejects with what creation throws. The caller closes the handle. */
  create(options: Options): Promise<WsdsHandle>
  /**
   * Whether enforce mode also labels the request with x-wsds-* headers for the handler.
   * Hono does only in monitor mode: the connection is `c.get('wsds')`.
   */
  labelsInEnforce: boolean
  /** A route guarded by the middleware's per-route form (Hono's `protect(handler)`), answering an `Echo`. */
  protectPath?: string
}

const sawHeader = (value: string | string[] | undefined | null): string | null => (Array.isArray(value) ? value[0]! : (value ?? null))

async function listen(server: Server): Promise<string> {
  if (!server.listening) await new Promise<void>((resolve) => server.once('listening', () => resolve()))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

async function stop(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

/** An app on its own node:http server; closing stops the server, then the middleware. */
async function running(server: Server, middleware: WsdsHandle): Promise<RunningApp> {
  const url = await listen(server)
  return {
    url,
    server,
    handle: middleware,
    async close() {
      await stop(server)
      await middleware.close()
    },
  }
}

const expressFramework: Framework = {
  name: 'express',
  labelsInEnforce: true,
  async start(options, customReject = false) {
    const opts = { ...options } as WsdsExpressOptions
    if (customReject) {
      opts.onReject = (_req, res, decision) =>
        decision.verdict === 'deny:missing' ? res.status(403).json({ error: 'custom', verdict: decision.verdict }) : undefined
    }
    const middleware = expressWsds(opts)
    const app = express()
    app.use('/api', middleware)
    app.get('/api/echo', (req, res) => {
      const echo: Echo = {
        wsds: req.wsds ?? null,
        verdict: req.get('x-wsds-verdict') ?? null,
        forwardedId: req.get('x-wsds-connection-id') ?? null,
        forwardedOrigin: req.get('x-wsds-origin') ?? null,
      }
      res.json(echo)
    })
    app.get('/open', (_req, res) => void res.json({ open: true }))
    await middleware.ready()
    return running(app.listen(0, '127.0.0.1'), middleware)
  },
  async create(options) {
    return expressWsds(options as WsdsExpressOptions)
  },
}

const fastifyFramework: Framework = {
  name: 'fastify',
  labelsInEnforce: true,
  async start(options, customReject = false) {
    const opts = { ...options } as WsdsFastifyOptions
    if (customReject) {
      opts.onReject = (_request, reply, decision) =>
        decision.verdict === 'deny:missing' ? reply.code(403).send({ error: 'custom', verdict: decision.verdict }) : undefined
    }
    const app = Fastify()
    let handle: WsdsHandle | undefined
    await app.register(
      async (api) => {
        await api.register(fastifyWsds, opts)
        handle = api.wsds
        api.get('/echo', async (request): Promise<Echo> => ({
          wsds: request.wsds ?? null,
          verdict: sawHeader(request.headers['x-wsds-verdict']),
          forwardedId: sawHeader(request.headers['x-wsds-connection-id']),
          forwardedOrigin: sawHeader(request.headers['x-wsds-origin']),
        }))
      },
      { prefix: '/api' },
    )
    app.get('/open', async () => ({ open: true }))
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    return { url, server: app.server, handle: handle!, close: () => app.close() }
  },
  async create(options) {
    const app = Fastify()
    try {
      await app.register(fastifyWsds, options as WsdsFastifyOptions)
    } catch (err) {
      await app.close()
      throw err
    }
    return app.wsds
  },
}

const honoFramework: Framework = {
  name: 'hono',
  labelsInEnforce: false,
  protectPath: '/guarded/echo',
  async start(options, customReject = false) {
    const opts = { ...options } as WsdsHonoOptions
    if (customReject) {
      opts.onReject = (c, decision) =>
        decision.verdict === 'deny:missing' ? c.json({ error: 'custom', verdict: decision.verdict }, 403) : undefined
    }
    const middleware = honoWsds(opts)
    const app = new Hono<WsdsEnv>()
    app.use('/api/*', middleware)
    const echoHandler = (c: Context<WsdsEnv>) =>
      c.json({
        wsds: c.get('wsds') ?? null,
        verdict: c.req.header('x-wsds-verdict') ?? null,
        forwardedId: c.req.header('x-wsds-connection-id') ?? null,
        forwardedOrigin: c.req.header('x-wsds-origin') ?? null,
      } satisfies Echo)
    app.get('/api/echo', echoHandler)
    app.get('/guarded/echo', middleware.protect(echoHandler))
    app.get('/open', (c) => c.json({ open: true }))
    await middleware.ready()
    return running(serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server, middleware)
  },
  async create(options) {
    return honoWsds(options as WsdsHonoOptions)
  },
}

// One private Redis for the whole file; suites on it run one after another.
let redis: RedisServer | null = null
before(async () => {
  if (redisBin.path !== null) redis = await startRedisServer(redisBin.path)
})
after(async () => {
  await redis?.stop()
})

/** Connections Redis has open, less the one asking. */
async function redisClients(): Promise<number> {
  const probe = new Redis(redis!.port, '127.0.0.1')
  try {
    const list = (await probe.client('LIST')) as string
    return list.trim().split('\n').length - 1
  } finally {
    probe.disconnect()
  }
}

interface Backend {
  name: string
  skip: string | false
  /** A gateway on this backend and the middleware options that reach its store. */
  start(): Promise<{ gateway: TestServer; options: Options; store: Store }>
}

const memoryBackend: Backend = {
  name: 'the memory store',
  skip: false,
  async start() {
    const store = createMemoryStore()
    const gateway = await startTestServer({}, { store })
    return { gateway, options: { store }, store }
  },
}

const redisBackend: Backend = {
  name: 'a real Redis',
  skip: redisBin.skip,
  async start() {
    const store = createRedisStore({ client: connectRedis(redis!.url), closeClient: true })
    assert.equal(await store.ready(5000), true)
    // A short lease, so the gateway writes its records back soon after Redis restarts empty.
    const gateway = await startTestServer({ leaseMs: 1500 }, { store })
    return { gateway, options: { storeUrl: redis!.url }, store }
  },
}

const unknownId = () => randomBytes(16).toString('base64url')

function middlewareSuite(fw: Framework): void {
  describe(`wsds/${fw.name}`, () => {
    describe('options', () => {
      const store = createMemoryStore()
      const cases: Array<[string, Options, RegExp]> = [
        ['neither store nor storeUrl', {}, /store or storeUrl/],
        ['both store and storeUrl', { store, storeUrl: 'redis://127.0.0.1:1/0' }, /store and storeUrl/],
        ['a storeUrl naming a private memory store', { storeUrl: 'memory' }, /storeUrl/],
        ['a Redis storeUrl with a bad database number', { storeUrl: 'redis://127.0.0.1:6379/zero' }, /storeUrl/],
        ['a store that is not a Store', { store: {} }, /store must be a Store/],
        ['storePrefix without storeUrl', { store, storePrefix: 'x:' }, /storePrefix/],
        ['a header name with a space', { store, header: 'connection id' }, /header/],
        ['a header name of our own x-wsds- labels', { store, header: 'X-WSDS-Verdict' }, /header/],
        ['an unknown mode', { store, mode: 'audit' }, /mode/],
        ['a negative cacheTtlMs', { store, cacheTtlMs: -1 }, /cacheTtlMs/],
        ['an onReject that is not a function', { store, onReject: 'deny' }, /onReject/],
        ['a misspelt option', { store, cacheTTL: 5 }, /cacheTTL is not an option/],
      ]
      for (const [what, options, names] of cases) {
        it(`refuses ${what} with ERR_CONFIG naming the option`, async () => {
          await assert.rejects(fw.create(options), (err: unknown) => {
            assert.ok(isWsdsError(err, 'ERR_CONFIG'), `expected ERR_CONFIG, got ${String(err)}`)
            assert.match(err.message, names)
            return true
          })
        })
      }
      it('accepts a valid configuration', async () => {
        const handle = await fw.create({ store, cacheTtlMs: 0, header: 'X-Session', mode: 'monitor' })
        assert.equal(handle.front.mode, 'monitor')
        assert.equal(handle.cacheTtlMs, 0)
        await handle.close()
      })

      it('trusts an admitted id for 300000 ms by default, as the gateway does', async () => {
        const handle = await fw.create({ store })
        assert.equal(handle.cacheTtlMs, 300_000)
        assert.equal(handle.front.mode, 'enforce')
        await handle.close()
      })

      it('trusts an admitted id for only 5000 ms by default on a dynamodb:// storeUrl, which cannot push revocations', async () => {
        // Opening a DynamoDB store sends nothing; no request is made here.
        const handle = await fw.create({ storeUrl: 'dynamodb://wsds-test?region=us-east-1&endpoint=http://127.0.0.1:9' })
        await handle.ready()
        assert.equal(handle.cacheTtlMs, 5000)
        await handle.close()
      })
    })

    for (const backend of [memoryBackend, redisBackend]) {
      describe(`on ${backend.name}`, { skip: backend.skip }, () => {
        let gateway: TestServer
        let store: Store
        let options: Options
        let app: RunningApp
        let monitor: RunningApp
        let custom: RunningApp
        before(async () => {
          ;({ gateway, options, store } = await backend.start())
          app = await fw.start(options)
          monitor = await fw.start({ ...options, mode: 'monitor' })
          custom = await fw.start({ ...options, header: CUSTOM_HEADER }, true)
        })
        after(async () => {
          await Promise.all([app?.close(), monitor?.close(), custom?.close()])
          await gateway?.close()
        })

        const get = (target: RunningApp, headers: Record<string, string> = {}, path = '/api/echo') => fetch(target.url + path, { headers })
        const echo = async (target: RunningApp, headers: Record<string, string> = {}): Promise<Echo> => {
          const res = await get(target, headers)
          assert.equal(res.status, 200)
          return (await res.json()) as Echo
        }
        const status = async (target: RunningApp, connectionId: string) => (await get(target, { connectionId })).status
        const handshake = () => verifiedHandshake(gateway.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
        const assertRefusal = async (res: Response, status: number, body: object) => {
          assert.equal(res.status, status)
          assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
          assert.equal(res.headers.get('cache-control'), 'no-store')
          assert.deepEqual(await res.json(), body)
        }

        describe('enforce mode', () => {
          it('admits a verified id and hands the handler its connectionId, origin and verifiedAt', async () => {
            const before = Date.now()
            const { client, connectionId } = await handshake()
            const seen = await echo(app, { connectionId })
            assert.equal(seen.wsds?.connectionId, connectionId)
            assert.equal(seen.wsds?.origin, TEST_ORIGIN)
            assert.equal(seen.wsds?.verdict, 'allow')
            assert.ok(typeof seen.wsds?.verifiedAt === 'number' && seen.wsds.verifiedAt >= before && seen.wsds.verifiedAt <= Date.now())
            if (fw.labelsInEnforce) {
              assert.equal(seen.verdict, 'allow')
              assert.equal(seen.forwardedId, connectionId)
            } else {
              assert.equal(seen.verdict, null)
              assert.equal(seen.forwardedId, null)
            }
            await client.close()
          })

          it('refuses a request without the header with 401 {"error":"unauthorized"}', async () => {
            await assertRefusal(await get(app), 401, { error: 'unauthorized' })
          })

          it('refuses an unknown id with 401', async () => {
            await assertRefusal(await get(app, { connectionId: unknownId() }), 401, { error: 'unauthorized' })
          })

          it('refuses a malformed id with 401', async () => {
            await assertRefusal(await get(app, { connectionId: 'not an id!' }), 401, { error: 'unauthorized' })
          })

          it('refuses the id of a connection that has not answered its challenge yet with 401', async () => {
            const client = await openSocket(gateway.wsUrl, { origin: TEST_ORIGIN })
            client.send({ action: 'hello', v: 1 })
            const { connectionId } = await client.expect('connection')
            await client.expect('challenge')
            await assertRefusal(await get(app, { connectionId }), 401, { error: 'unauthorized' })
            await client.close()
          })

          it('stops admitting an id within 100 ms of its socket closing, even while it is cached', async () => {
            const { client, connectionId } = await handshake()
            assert.equal(await status(app, connectionId), 200)
            assert.equal(await status(app, connectionId), 200)
            await client.close()
            await eventually(async () => (await status(app, connectionId)) === 401, 100, '401 after the socket closed')
          })

          it(`${fw.labelsInEnforce ? 'replaces' : 'removes'} x-wsds-* headers the client sent${fw.labelsInEnforce ? ' with its own' : ''}`, async () => {
            const { client, connectionId } = await handshake()
            const forged = { connectionId, 'x-wsds-origin': 'http://evil.example', 'x-wsds-verdict': 'deny:forged', 'x-wsds-connection-id': 'forged-id-forged-id' }
            // Twice: the second request is answered from the authenticator's cache, a path of its own.
            for (let i = 0; i < 2; i++) {
              const seen = await echo(app, forged)
              assert.equal(seen.forwardedOrigin, fw.labelsInEnforce ? TEST_ORIGIN : null)
              assert.equal(seen.verdict, fw.labelsInEnforce ? 'allow' : null)
              assert.equal(seen.forwardedId, fw.labelsInEnforce ? connectionId : null)
              assert.equal(seen.wsds?.connectionId, connectionId)
            }
            await client.close()
          })

          if (fw.protectPath !== undefined) {
            const path = fw.protectPath
            it('guards a single route with protect(handler): admits a verified id, refuses others, 401 within 100 ms of the close', async () => {
              await assertRefusal(await get(app, {}, path), 401, { error: 'unauthorized' })
              await assertRefusal(await get(app, { connectionId: unknownId() }, path), 401, { error: 'unauthorized' })
              const { client, connectionId } = await handshake()
              for (let i = 0; i < 2; i++) {
                const res = await get(app, { connectionId, 'x-wsds-verdict': 'allow' }, path)
                assert.equal(res.status, 200)
                const seen = (await res.json()) as Echo
                assert.equal(seen.wsds?.connectionId, connectionId)
                assert.equal(seen.wsds?.origin, TEST_ORIGIN)
                assert.equal(seen.verdict, null)
              }
              await client.close()
              await eventually(async () => (await get(app, { connectionId }, path)).status === 401, 100, 'protect() route 401 after the socket closed')
            })
          }

          it('leaves routes outside the protected prefix open', async () => {
            const res = await get(app, {}, '/open')
            assert.equal(res.status, 200)
            assert.deepEqual(await res.json(), { open: true })
          })
        })

        describe('monitor mode', () => {
          it('admits a request without an id, labels it deny:missing and sets no connection', async () => {
            const seen = await echo(monitor)
            assert.equal(seen.verdict, 'deny:missing')
            assert.equal(seen.wsds, null)
          })

          it('admits an unknown id labelled deny:unknown', async () => {
            const seen = await echo(monitor, { connectionId: unknownId() })
            assert.equal(seen.verdict, 'deny:unknown')
            assert.equal(seen.wsds, null)
          })

          it('labels a verified id allow and sets the connection', async () => {
            const { client, connectionId } = await handshake()
            const seen = await echo(monitor, { connectionId })
            assert.equal(seen.verdict, 'allow')
            assert.equal(seen.wsds?.connectionId, connectionId)
            assert.equal(seen.wsds?.origin, TEST_ORIGIN)
            await client.close()
          })

          it('drops a forged verdict and connection id the client sent', async () => {
            const seen = await echo(monitor, { 'x-wsds-verdict': 'allow', 'x-wsds-connection-id': 'forged-id-forged-id' })
            assert.equal(seen.verdict, 'deny:missing')
            assert.equal(seen.forwardedId, null)
          })

          it('labels every verdict, cached admissions included, in x-wsds-* request headers', async () => {
            const { client, connectionId } = await handshake()
            for (let i = 0; i < 2; i++) {
              const seen = await echo(monitor, { connectionId, 'x-wsds-origin': 'http://evil.example' })
              assert.equal(seen.verdict, 'allow')
              assert.equal(seen.forwardedId, connectionId)
              assert.equal(seen.forwardedOrigin, TEST_ORIGIN)
            }
            await client.close()
          })

          if (fw.protectPath !== undefined) {
            it('admits and labels on a protect(handler) route too', async () => {
              const res = await get(monitor, { connectionId: unknownId() }, fw.protectPath)
              assert.equal(res.status, 200)
              const seen = (await res.json()) as Echo
              assert.equal(seen.verdict, 'deny:unknown')
              assert.equal(seen.wsds, null)
            })
          }
        })

        describe('header and onReject options', () => {
          it('reads the id from the header the header option names', async () => {
            const { client, connectionId } = await handshake()
            const seen = await echo(custom, { [CUSTOM_HEADER]: connectionId })
            assert.equal(seen.wsds?.connectionId, connectionId)
            await client.close()
          })

          it('lets onReject answer a refusal itself', async () => {
            const { client, connectionId } = await handshake()
            // The default header name means nothing to this app: the id is missing.
            const res = await get(custom, { connectionId })
            assert.equal(res.status, 403)
            assert.deepEqual(await res.json(), { error: 'custom', verdict: 'deny:missing' })
            await client.close()
          })

          it('keeps the default refusal when onReject leaves it', async () => {
            await assertRefusal(await get(custom, { [CUSTOM_HEADER]: unknownId() }), 401, { error: 'unauthorized' })
          })
        })

        if (backend === memoryBackend) {
          it('leaves a store it was given open when it closes', async () => {
            const other = await fw.start(options)
            const { client, connectionId } = await handshake()
            await other.close()
            assert.notEqual(await store.get(connectionId), null)
            assert.equal(await status(app, connectionId), 200)
            await client.close()
          })
        }

        if (backend === redisBackend) {
          it('closes the Redis connections it opened for storeUrl when the app closes', async () => {
            const baseline = await redisClients()
            const other = await fw.start(options)
            assert.equal(await redisClients(), baseline + 2, 'a command and a subscriber connection')
            await other.close()
            await eventually(async () => (await redisClients()) === baseline, 2000, 'Redis connections closed')
          })

          it('opens no connection when an option is invalid', async () => {
            const baseline = await redisClients()
            await assert.rejects(fw.create({ storeUrl: redis!.url, cacheTtlMs: -5 }), (err: unknown) => isWsdsError(err, 'ERR_CONFIG'))
            await new Promise((r) => setTimeout(r, 50))
            assert.equal(await redisClients(), baseline)
          })

          it('answers 503 {"error":"store-unavailable"} while Redis is down, and recovers when it returns', async () => {
            const held = await handshake()
            assert.equal(await status(app, held.connectionId), 200)
            await redis!.stop()
            try {
              await eventually(async () => (await status(app, held.connectionId)) === 503, 3000, '503 while Redis is down')
              const res = await get(app, { connectionId: held.connectionId })
              assert.equal(res.headers.get('retry-after'), '1')
              await assertRefusal(res, 503, { error: 'store-unavailable' })
              const seen = await echo(monitor, { connectionId: held.connectionId })
              assert.equal(seen.verdict, 'deny:store-unavailable')
              assert.equal(seen.wsds, null)
              if (fw.protectPath !== undefined) await assertRefusal(await get(app, { connectionId: held.connectionId }, fw.protectPath), 503, { error: 'store-unavailable' })
            } finally {
              await redis!.start()
            }
            // Redis came back empty: the gateway writes the held socket's record back.
            await eventually(async () => (await status(app, held.connectionId)) === 200, 8000, 'held id admitted again')
            // Revocations are heard again once the subscription is back.
            await held.client.close()
            await eventually(async () => (await status(app, held.connectionId)) === 401, 100, '401 after the socket closed')
          })
        }
      })
    }

    describe("with the gateway on the app's own server (attachGateway)", () => {
      let store: ReturnType<typeof createMemoryStore>
      let app: RunningApp
      let gateway: Gateway
      before(async () => {
        store = createMemoryStore()
        app = await fw.start({ store })
        gateway = attachGateway(app.server, {
          store,
          keyRing: createKeyRing([testKeySet]),
          allowedOrigins: [TEST_ORIGIN],
        })
      })
      after(async () => {
        await gateway?.close()
        await app?.close()
      })

      it('verifies a page on /wsds and admits its REST calls on the same port until the socket closes', async () => {
        const wsUrl = app.url.replace('http', 'ws') + '/wsds'
        const { client, connectionId } = await verifiedHandshake(wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
        const res = await fetch(`${app.url}/api/echo`, { headers: { connectionId } })
        assert.equal(res.status, 200)
        assert.equal(((await res.json()) as Echo).wsds?.connectionId, connectionId)
        await client.close()
        await eventually(async () => (await fetch(`${app.url}/api/echo`, { headers: { connectionId } })).status === 401, 100, '401 after close')
      })

      it('leaves the app its HTTP routes and refuses upgrades on other paths with 404', async () => {
        assert.equal((await fetch(`${app.url}/open`)).status, 200)
        await assert.rejects(openSocket(app.url.replace('http', 'ws') + '/elsewhere', { origin: TEST_ORIGIN }), { status: 404 })
      })
    })
  })
}

middlewareSuite(expressFramework)
middlewareSuite(fastifyFramework)
middlewareSuite(honoFramework)

describe('wsds/hono on Web APIs alone', () => {
  it('answers through app.fetch with no node:http server', async () => {
    const store = createMemoryStore()
    const connectionId = unknownId()
    await store.put({ connectionId, status: 'verified', origin: TEST_ORIGIN, createdAt: 1, verifiedAt: 2, expiresAt: 0 }, { ttlMs: 60_000 })
    const app = new Hono<WsdsEnv>()
    const middleware = honoWsds({ store })
    app.use('*', middleware)
    app.get('/me', (c) => c.json(c.get('wsds') ?? null))
    const admitted = await app.fetch(new Request('http://app.test/me', { headers: { connectionId } }))
    assert.deepEqual(await admitted.json(), { connectionId, origin: TEST_ORIGIN, verifiedAt: 2, verdict: 'allow' })
    const refused = await app.fetch(new Request('http://app.test/me'))
    assert.equal(refused.status, 401)
    assert.equal(await refused.text(), '{"error":"unauthorized"}')
    await middleware.close()
  })

  it('labels requests whose headers the runtime will not let it change (as on Workers) through a copy', async () => {
    const app = new Hono<WsdsEnv>()
    const middleware = honoWsds({ store: createMemoryStore(), mode: 'monitor' })
    app.use('*', middleware)
    app.get('/me', (c) => c.json({ verdict: c.req.header('x-wsds-verdict') ?? null, forwardedId: c.req.header('x-wsds-connection-id') ?? null }))
    const request = new Request('http://app.test/me', { headers: { 'x-wsds-verdict': 'allow', 'x-wsds-connection-id': 'forged-id-forged' } })
    // Incoming requests' headers are immutable there: every change throws a TypeError.
    const frozen = new Headers(request.headers)
    const refuse = () => {
      throw new TypeError('immutable')
    }
    Object.assign(frozen, { set: refuse, delete: refuse, append: refuse })
    Object.defineProperty(request, 'headers', { value: frozen })
    const res = await app.fetch(request)
    assert.deepEqual(await res.json(), { verdict: 'deny:missing', forwardedId: null })
    await middleware.close()
  })

  it('imports no package and no node:* module at run time, in the module or anything it imports statically', () => {
    const seen = new Set<string>()
    const outside: string[] = []
    const visit = (file: string) => {
      if (seen.has(file)) return
      seen.add(file)
      const source = readFileSync(file, 'utf8')
      // Value imports and re-exports; `import type` / `export type` vanish at run time.
      const re = /^\s*(?:import|export)\s+(?!type\b)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm
      for (const m of source.matchAll(re)) {
        const spec = m[1]!
        if (spec.startsWith('.')) visit(resolve(dirname(file), spec))
        else outside.push(`${spec} (from ${file.slice(root.length + 1)})`)
      }
    }
    visit(join(root, 'src/middleware/hono.ts'))
    assert.ok(seen.has(join(root, 'src/middleware/shared.ts')) && seen.has(join(root, 'src/core/front.ts')), 'walked the graph')
    assert.deepEqual(outside, [])
  })

  it('type-checks with Web API types only (no @types/node)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsds-hono-tsc-'))
    const config = join(dir, 'tsconfig.json')
    writeFileSync(
      config,
      JSON.stringify({
        extends: join(root, 'tsconfig.json'),
        compilerOptions: { lib: ['ES2022', 'DOM'], types: [], rootDir: root, noEmit: true },
        include: [],
        files: [join(root, 'src/middleware/hono.ts')],
      }),
    )
    try {
      execFileSync(join(root, 'node_modules/.bin/tsc'), ['-p', config], { encoding: 'utf8', stdio: 'pipe' })
    } catch (err) {
      assert.fail(`tsc found Node-only code in wsds/hono:\n${(err as { stdout?: string }).stdout ?? String(err)}`)
    }
  })
})

describe('package exports', () => {
  for (const name of ['express', 'fastify', 'hono']) {
    it(`resolves wsds/${name} to the middleware, with ${name} an optional peer dependency`, async () => {
      const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
        exports: Record<string, { types: string; import: string; default: string }>
        peerDependencies: Record<string, string>
        peerDependenciesMeta: Record<string, { optional?: boolean }>
      }
      // The built file (npm test builds first; docs/packaging.md).
      assert.deepEqual(pkg.exports[`./${name}`], {
        types: `./dist/middleware/${name}.d.ts`,
        import: `./dist/middleware/${name}.js`,
        default: `./dist/middleware/${name}.js`,
      })
      assert.ok(pkg.peerDependencies[name], `${name} in peerDependencies`)
      assert.equal(pkg.peerDependenciesMeta[name]?.optional, true)
      // The package's own name resolves through "exports", as it will for an app.
      const mod = (await import(`wsds/${name}`)) as { wsds?: unknown }
      assert.equal(typeof mod.wsds, 'function')
    })
  }
})
