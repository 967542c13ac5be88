/**
 * The same policy rule table (test/contracts/policy-cases.ts) through every front: the
 * gateway's /api proxy, real nginx forward auth, Express, Fastify, Hono and the AWS
 * authorizer. Each front reads the same rules file.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe } from 'node:test'
import { serve } from '@hono/node-server'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import { Hono } from 'hono'
import { parse as parseYaml } from 'yaml'
import type { AwsConfig } from '../src/aws/config.ts'
import type { AuthorizerEvent } from '../src/aws/events.ts'
import { createAuthorizer, UNAUTHORIZED } from '../src/aws/rest.ts'
import { wsds as expressWsds } from '../src/middleware/express.ts'
import { wsds as fastifyWsds } from '../src/middleware/fastify.ts'
import { wsds as honoWsds, type WsdsEnv } from '../src/middleware/hono.ts'
import type { WsdsHandle } from '../src/middleware/shared.ts'
import { POLICY_JSON, POLICY_YAML, policyCases, writePolicyFile, type PolicyCase, type PolicyFront } from './contracts/policy-cases.ts'
import { caddyBinary, nginxBinary, startCaddy, startNginx, type RunningProxy } from './helpers/proxies.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { verifiedHandshake, type TestClient } from './helpers/ws-client.ts'

const CI = process.env.CI === 'true'

/** The protected service: answers 200 with what it was told about the request. */
async function startEcho(): Promise<{ server: Server; url: string; host: string }> {
  const server = createServer((req: IncomingMessage, res) => {
    req.resume()
    const body = JSON.stringify({ path: req.url, rule: req.headers['x-wsds-rule'] ?? null, verdict: req.headers['x-wsds-verdict'] ?? null })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return { server, url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}` }
}

const stopServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })

function headersOf(c: PolicyCase, connectionId: string | undefined): Record<string, string> {
  return {
    ...(c.headers ?? {}),
    ...(connectionId !== undefined ? { connectionId } : {}),
    ...(c.forwardedFor !== undefined ? { 'x-forwarded-for': c.forwardedFor } : {}),
  }
}

async function httpSend(base: string, c: PolicyCase, connectionId: string | undefined) {
  const res = await fetch(base + c.path, { method: c.method, headers: headersOf(c, connectionId) })
  const body = await res.text()
  let rule: string | null = null
  if (res.status === 200) rule = (JSON.parse(body) as { rule: string | null }).rule
  return { status: res.status, body, rule }
}

/** A gateway for handshakes (and the memory store the middleware read), with one verified page. */
function withVerifiedPage(getGateway: () => TestServer) {
  let client: TestClient | null = null
  let id: string | null = null
  return {
    async verifiedId() {
      if (id === null) {
        const result = await verifiedHandshake(getGateway().wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
        client = result.client
        id = result.connectionId
      }
      return id
    },
    close() {
      client?.close()
    },
  }
}

for (const trustProxy of [false, true]) {
  describe(`gateway /api proxy with WSDS_POLICY_FILE (YAML), WSDS_TRUST_PROXY=${trustProxy ? 'on' : 'off'}`, () => {
    let echo: Awaited<ReturnType<typeof startEcho>>
    let gateway: TestServer
    const page = withVerifiedPage(() => gateway)
    before(async () => {
      echo = await startEcho()
      gateway = await startTestServer({ policyFile: writePolicyFile(), upstream: echo.url, trustProxy })
    })
    after(async () => {
      page.close()
      await gateway.close()
      await stopServer(echo.server)
    })
    policyCases(() => ({
      send: (c, id) => httpSend(gateway.url, c, id),
      verifiedId: page.verifiedId,
      trustsForwardedFor: trustProxy,
      reportsRule: true,
    }))
  })
}

describe('nginx forward auth (deploy/nginx template) in front of a gateway with the rules (JSON)', { skip: !CI && nginxBinary.skip }, () => {
  let echo: Awaited<ReturnType<typeof startEcho>>
  let gateway: TestServer
  let nginx: RunningProxy
  const page = withVerifiedPage(() => gateway)
  before(async () => {
    echo = await startEcho()
    // nginx replaces X-Forwarded-For with the address it saw, so the gateway may trust it.
    gateway = await startTestServer({ policyFile: writePolicyFile(POLICY_JSON, 'policy.json'), trustProxy: true })
    nginx = await startNginx({ gateway: `127.0.0.1:${gateway.port}`, upstream: echo.host })
  })
  after(async () => {
    page.close()
    await nginx?.stop()
    await gateway?.close()
    if (echo !== undefined) await stopServer(echo.server)
  })
  policyCases(() => ({
    send: (c, id) => httpSend(nginx.url, c, id),
    verifiedId: page.verifiedId,
    // A client's X-Forwarded-For never reaches the gateway through nginx: it is never honoured.
    trustsForwardedFor: false,
    reportsRule: true,
  }))
})

describe('Caddy forward_auth (deploy/caddy Caddyfile) in front of a gateway with the rules', { skip: !CI && caddyBinary.skip }, () => {
  let echo: Awaited<ReturnType<typeof startEcho>>
  let gateway: TestServer
  let caddy: RunningProxy
  const page = withVerifiedPage(() => gateway)
  before(async () => {
    echo = await startEcho()
    gateway = await startTestServer({ policyFile: writePolicyFile(), trustProxy: true })
    caddy = await startCaddy({ gateway: `127.0.0.1:${gateway.port}`, upstream: echo.host })
  })
  after(async () => {
    page.close()
    await caddy?.stop()
    await gateway?.close()
    if (echo !== undefined) await stopServer(echo.server)
  })
  policyCases(() => ({
    send: (c, id) => httpSend(caddy.url, c, id),
    verifiedId: page.verifiedId,
    // Caddy trusts no proxy by default: it replaces a client's X-Forwarded-For.
    trustsForwardedFor: false,
    reportsRule: true,
  }))
})

interface MiddlewareApp {
  url: string
  close(): Promise<void>
}

const policyData = () => parseYaml(POLICY_YAML) as object

const middlewares: Record<string, (store: TestServer['store'], trust: boolean) => Promise<MiddlewareApp>> = {
  async express(store, trust) {
    const middleware = expressWsds({ store, policy: policyData() })
    const app = express()
    app.set('trust proxy', trust)
    app.use('/api', middleware)
    app.all(/^\/api\//, (req, res) => void res.json({ path: req.originalUrl, rule: req.get('x-wsds-rule') ?? null }))
    const server = app.listen(0, '127.0.0.1')
    await new Promise<void>((resolve) => server.once('listening', () => resolve()))
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      async close() {
        await stopServer(server)
        await (middleware as WsdsHandle).close()
      },
    }
  },
  async fastify(store, trust) {
    const app: FastifyInstance = Fastify({ trustProxy: trust })
    await app.register(
      async (api) => {
        await api.register(fastifyWsds, { store, policy: policyData() })
        api.all('/*', async (request) => ({ path: request.url, rule: request.headers['x-wsds-rule'] ?? null }))
      },
      { prefix: '/api' },
    )
    const url = await app.listen({ port: 0, host: '127.0.0.1' })
    return { url, close: () => app.close() }
  },
  async hono(store) {
    const middleware = honoWsds({ store, policy: policyData() })
    const app = new Hono<WsdsEnv>()
    app.use('/api/*', middleware)
    // Hono's enforce mode labels nothing (hono.ts: copying headers costs): the rule is not told.
    app.all('/api/*', (c) => c.json({ path: c.req.path, rule: null }))
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server
    if (!server.listening) await new Promise<void>((resolve) => server.once('listening', () => resolve()))
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      async close() {
        await stopServer(server)
        await middleware.close()
      },
    }
  },
}

for (const [name, start] of Object.entries(middlewares)) {
  for (const trust of name === 'hono' ? [false] : [false, true]) {
    describe(`${name} middleware with the rules${name === 'hono' ? '' : `, trust proxy ${trust ? 'on' : 'off'}`}`, () => {
      let gateway: TestServer
      let app: MiddlewareApp
      const page = withVerifiedPage(() => gateway)
      before(async () => {
        gateway = await startTestServer()
        app = await start(gateway.store, trust)
      })
      after(async () => {
        page.close()
        await app?.close()
        await gateway?.close()
      })
      policyCases(() => ({
        send: (c, id) => httpSend(app.url, c, id),
        verifiedId: page.verifiedId,
        // Hono sees the socket's address only (@hono/node-server), never X-Forwarded-For.
        trustsForwardedFor: name === 'hono' ? false : trust,
        reportsRule: name !== 'hono',
      }))
    })
  }
}

describe('AWS REST authorizer with WSDS_POLICY_FILE bundled', () => {
  let gateway: TestServer
  let authorize: (event: AuthorizerEvent) => Promise<unknown>
  const page = withVerifiedPage(() => gateway)
  const methodArn = (method: string, path: string) => `arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/${method}${path.split('?')[0]}`
  before(async () => {
    gateway = await startTestServer()
    const config = { mode: 'enforce', policyFile: writePolicyFile() } as AwsConfig
    // The records live in the gateway's store; API Gateway's GetConnection (the authorizer's
    // liveness check) is the control plane that cannot run here: every socket is alive.
    const store = gateway.store
    const table = { load: async (id: string) => ((r) => (r === null ? null : { record: r, gatewayId: 'gw' }))(await store.get(id)), removeById: async () => {} }
    authorize = createAuthorizer({ store, table, connections: { alive: async () => true }, log: () => {}, config, now: Date.now } as never)
  })
  after(async () => {
    page.close()
    await gateway?.close()
  })
  policyCases(() => ({
    async send(c, id) {
      const headers = headersOf(c, id)
      delete headers['x-forwarded-for']
      const event: AuthorizerEvent = {
        type: 'REQUEST',
        methodArn: methodArn(c.method, c.path),
        path: c.path.split('?')[0],
        httpMethod: c.method,
        headers,
        // API Gateway works out the client address itself: a partner case arrives as its sourceIp.
        requestContext: { identity: { sourceIp: c.forwardedFor?.split(',')[0]?.trim() ?? '192.0.2.10' } },
      }
      try {
        const result = (await authorize(event)) as { policyDocument: { Statement: { Effect: string; Resource: string }[] }; context: { rule?: string } }
        const statement = result.policyDocument.Statement[0]!
        if (statement.Effect === 'Deny') return { status: 403, body: '{"error":"forbidden"}' }
        // With rules in force an Allow covers only this method and path.
        assert.equal(statement.Resource, event.methodArn)
        return { status: 200, body: '{}', rule: result.context.rule ?? null }
      } catch (err) {
        assert.equal((err as Error).message, UNAUTHORIZED)
        return { status: 401, body: '{"error":"unauthorized"}' }
      }
    },
    verifiedId: page.verifiedId,
    // sourceIp is API Gateway's own finding: the partner's address is what it reports.
    trustsForwardedFor: true,
    reportsRule: true,
  }))
})
