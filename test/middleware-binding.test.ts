/**
 * Request binding and the per-connection quota in the Express, Fastify and Hono middleware,
 * each sharing a memory store with a real in-process gateway: a bound connection's request
 * passes only with its signature over the method and the target as the client sent it.
 */
import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { serve } from '@hono/node-server'
import express from 'express'
import Fastify from 'fastify'
import { Hono } from 'hono'
import { wsds as expressWsds } from '../src/middleware/express.ts'
import { wsds as fastifyWsds } from '../src/middleware/fastify.ts'
import { wsds as honoWsds, type WsdsEnv } from '../src/middleware/hono.ts'
import type { WsdsMiddlewareOptions } from '../src/middleware/shared.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import type { Store } from '../src/core/store.ts'
import { boundHandshake, type BindingTarget } from './contracts/binding-suite.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'

interface App {
  url: string
  close(): Promise<void>
}

const adapters: Record<string, (options: WsdsMiddlewareOptions) => Promise<App>> = {
  express: async (options) => {
    const app = express()
    app.use('/api', expressWsds(options))
    app.all('/api/me', (req, res) => void res.json({ id: req.wsds?.connectionId }))
    const server = app.listen(0, '127.0.0.1')
    await new Promise((r) => server.once('listening', r))
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((r) => server.close(() => r())) }
  },
  fastify: async (options) => {
    const app = Fastify()
    await app.register(fastifyWsds, options)
    app.all('/api/me', async (request) => ({ id: request.wsds?.connectionId }))
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    return { url, close: () => app.close() }
  },
  hono: async (options) => {
    const app = new Hono<WsdsEnv>()
    app.use('/api/*', honoWsds(options))
    app.all('/api/me', (c) => c.json({ id: c.get('wsds')?.connectionId }))
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server
    const url = await new Promise<string>((resolve) => {
      if (server.listening) resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
      else server.once('listening', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
    })
    return { url, close: () => new Promise((r) => server.close(() => r())) }
  },
}

for (const [name, start] of Object.entries(adapters)) {
  describe(`${name} middleware with request binding`, () => {
    let store: Store
    let gateway: TestServer
    let app: App
    let quotaApp: App
    before(async () => {
      store = createMemoryStore()
      gateway = await startTestServer({}, { store })
      app = await start({ store })
      quotaApp = await start({ store, idRateLimit: 1 })
    })
    after(async () => {
      await app?.close()
      await quotaApp?.close()
      await gateway?.close()
    })
    const target = (): BindingTarget => ({ wsUrl: gateway.wsUrl, restUrl: app.url, origin: TEST_ORIGIN, keySet: testKeySet, protectedPath: '/api/me?x=%41', windowMs: 30_000, exactCloseCodes: true, close: async () => {} })

    it('admits a signed request, on the store read and from the cache, and nothing else', async () => {
      const a = await boundHandshake(target())
      const path = '/api/me?x=%41'
      for (let i = 0; i < 3; i++) {
        const res = await fetch(app.url + path, { method: 'POST', headers: { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('POST', path) } })
        assert.equal(res.status, 200)
        assert.deepEqual(await res.json(), { id: a.connectionId })
      }
      const bare = await fetch(app.url + path, { method: 'POST', headers: { connectionId: a.connectionId } })
      assert.equal(bare.status, 401)
      assert.deepEqual(await bare.json(), { error: 'unauthorized' })
      const otherTarget = await fetch(app.url + '/api/me?x=A', { method: 'POST', headers: { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('POST', path) } })
      assert.equal(otherTarget.status, 401, 'percent-encoding is signed as sent')
      await otherTarget.arrayBuffer()
      const otherMethod = await fetch(app.url + path, { method: 'PUT', headers: { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('POST', path) } })
      assert.equal(otherMethod.status, 401)
      await otherMethod.arrayBuffer()
      await a.client.close()
    })

    it('answers over the per-connection quota with 429 and Retry-After', async () => {
      const a = await boundHandshake(target())
      const call = async () => fetch(quotaApp.url + '/api/me', { headers: { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', '/api/me') } })
      const statuses: number[] = []
      let refused: Response | undefined
      for (let i = 0; i < 6 && refused === undefined; i++) {
        const res = await call()
        statuses.push(res.status)
        if (res.status === 429) refused = res
        else await res.arrayBuffer()
      }
      assert.deepEqual(statuses.slice(0, 2), [200, 200], 'a burst of 2N passes')
      assert.ok(refused, `refused after the burst: ${statuses}`)
      assert.match(refused.headers.get('retry-after') ?? '', /^[1-9]\d*$/)
      assert.deepEqual(await refused.json(), { error: 'rate-limited' })
      await a.client.close()
    })
  })
}

describe('middleware binding options', () => {
  it('refuses a bad bindingWindowMs or idRateLimit, naming it', () => {
    const store = createMemoryStore()
    assert.throws(() => expressWsds({ store, bindingWindowMs: -1 }), /bindingWindowMs/)
    assert.throws(() => expressWsds({ store, idRateLimit: 0 }), /idRateLimit/)
  })
})
