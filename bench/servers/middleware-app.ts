/**
 * Server under test for the middleware section: one app of the framework BENCH_FRAMEWORK
 * (express, fastify or hono via @hono/node-server) with the same handler on three routes:
 * `/api/greeting` behind the framework's WSDS middleware, `/open/greeting` without it, and
 * `/noop/greeting` behind a middleware that does nothing (for context: what any middleware
 * of that shape costs in that framework). Hono also has `/route/greeting`, the handler
 * wrapped in the middleware's `protect()` instead of `app.use`.
 * The WSDS gateway is attached to the app's own HTTP server with a memory store, so the
 * verified connection the load generator holds is a real one in the same process, and the
 * middleware reads that store (warm cache after the first request).
 *
 * env: BENCH_FRAMEWORK, BENCH_KEYS_FILE, BENCH_ORIGIN.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serve } from '@hono/node-server'
import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { createKeyRing } from '../../src/core/keyring.ts'
import { attachGateway } from '../../src/gateway/gateway.ts'
import { wsds as expressWsds } from '../../src/middleware/express.ts'
import { wsds as fastifyWsds } from '../../src/middleware/fastify.ts'
import { wsds as honoWsds } from '../../src/middleware/hono.ts'
import type { WsdsHandle } from '../../src/middleware/shared.ts'
import { loadKeySetFile } from '../../src/server/config.ts'
import { createMemoryStore } from '../../src/stores/memory.ts'
import { serveCommands } from '../lib/ipc.ts'

const framework = process.env.BENCH_FRAMEWORK
const store = createMemoryStore()
const greeting = { greeting: 'hello bench' }
let handle: WsdsHandle
let server: Server

if (framework === 'express') {
  const app = express()
  const mw = expressWsds({ store })
  handle = mw
  app.use('/api', mw)
  const handler = (_req: express.Request, res: express.Response) => void res.json(greeting)
  app.get('/api/greeting', handler)
  app.get('/open/greeting', handler)
  app.use('/noop', (_req, _res, next) => next())
  app.get('/noop/greeting', handler)
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s))
  })
} else if (framework === 'fastify') {
  const app = Fastify({ logger: false })
  const handler = async () => greeting
  await app.register(
    async (api) => {
      await api.register(fastifyWsds, { store })
      handle = api.wsds
      api.get('/greeting', handler)
    },
    { prefix: '/api' },
  )
  await app.register(async (open) => void open.get('/greeting', handler), { prefix: '/open' })
  await app.register(
    async (noop) => {
      noop.addHook('onRequest', async () => {})
      noop.get('/greeting', handler)
    },
    { prefix: '/noop' },
  )
  await app.listen({ port: 0, host: '127.0.0.1' })
  server = app.server
} else if (framework === 'hono') {
  const app = new Hono()
  const mw = honoWsds({ store })
  handle = mw
  app.use('/api/*', mw)
  app.get('/api/greeting', (c) => c.json(greeting))
  app.get('/open/greeting', (c) => c.json(greeting))
  app.use('/noop/*', async (_c, next) => {
    await next()
  })
  app.get('/noop/greeting', (c) => c.json(greeting))
  // The same check as the route's only handler (no middleware chain): Hono only.
  app.get('/route/greeting', mw.protect((c) => c.json(greeting)))
  server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as Server)) as Server
  })
} else {
  throw new Error(`BENCH_FRAMEWORK must be express, fastify or hono, got ${framework}`)
}
server.keepAliveTimeout = 65_000

const gateway = attachGateway(server, {
  store,
  keyRing: createKeyRing([loadKeySetFile(process.env.BENCH_KEYS_FILE!)]),
  allowedOrigins: [process.env.BENCH_ORIGIN!],
  path: '/wsds',
  rateLimiter: null,
})
const { port } = server.address() as AddressInfo
serveCommands(
  { port, url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/wsds` },
  { gateway: () => ({ open: gateway.openConnections, verified: gateway.verifiedConnections, decisions: handle.front.decisions }) },
)
