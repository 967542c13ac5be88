/**
 * Request binding and the per-connection quota through the real gateway: the binding
 * contract suite (test/contracts/binding-suite.ts) against one process and against a Redis
 * cluster (socket on node A, requests on node B), then forward auth, the quota and metrics.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { bindingSuite, boundHandshake, type BindingTarget } from './contracts/binding-suite.ts'
import { startNodeProcess, writeKeySetFiles } from './helpers/node-process.ts'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { TEST_ORIGIN, olderKeySet, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { loadConfig } from '../src/server/config.ts'
import { requireBinary } from './helpers/services.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

const PATH = '/api/greeting?who=Ada%20L'

bindingSuite('self-hosted gateway', async ({ binding }) => {
  const s = await startTestServer({ binding, bindingWindowMs: 30_000 })
  return { wsUrl: s.wsUrl, restUrl: s.url, origin: TEST_ORIGIN, keySet: testKeySet, protectedPath: PATH, windowMs: 30_000, exactCloseCodes: true, close: () => s.close() }
})

const redisBin = requireBinary('redis-server')
describe('binding across a Redis cluster', { skip: redisBin.skip }, () => {
  let redis: RedisServer
  const keysFile = writeKeySetFiles([testKeySet, olderKeySet])
  before(async () => (redis = await startRedisServer(redisBin.path!)))
  after(() => redis?.stop())
  bindingSuite('socket on node A, requests on node B', async ({ binding }): Promise<BindingTarget> => {
    const env = {
      WSDS_STORE: redis.url,
      WSDS_KEYS_FILE: keysFile,
      WSDS_ALLOWED_ORIGINS: TEST_ORIGIN,
      WSDS_RATE_LIMIT: 'off',
      WSDS_BINDING: binding,
      WSDS_BINDING_WINDOW_MS: '20000',
      // A distinct prefix per mode: the three deployments share one Redis.
      WSDS_STORE_PREFIX: `wsds-${binding}:`,
    }
    const [a, b] = await Promise.all([startNodeProcess(env, 60_000), startNodeProcess(env, 60_000)])
    return {
      wsUrl: a.wsUrl,
      restUrl: b.url,
      origin: TEST_ORIGIN,
      keySet: testKeySet,
      protectedPath: PATH,
      windowMs: 20_000,
      exactCloseCodes: true,
      close: async () => void (await Promise.all([a.stop(), b.stop()])),
    }
  })
})

describe('forward auth checks the original request', () => {
  let s: TestServer
  before(async () => (s = await startTestServer()))
  after(() => s?.close())
  const target = (): BindingTarget => ({ wsUrl: s.wsUrl, restUrl: s.url, origin: TEST_ORIGIN, keySet: testKeySet, protectedPath: PATH, windowMs: 30_000, exactCloseCodes: true, close: async () => {} })

  it('admits a request signed for X-Forwarded-Method and X-Forwarded-Uri, and nothing else', async () => {
    const a = await boundHandshake(target())
    const auth = (headers: Record<string, string>) => fetch(`${s.url}/wsds/auth`, { headers: { connectionId: a.connectionId, ...headers } })
    const signed = await a.sign('POST', '/orders/7?x=%2F')
    const ok = await auth({ 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/orders/7?x=%2F', 'wsds-signature': signed })
    assert.equal(ok.status, 204)
    // The same signature for another original method or target, or none at all: 401.
    assert.equal((await auth({ 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/orders/7?x=%2F', 'wsds-signature': signed })).status, 401)
    assert.equal((await auth({ 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/orders/7?x=/', 'wsds-signature': signed })).status, 401)
    assert.equal((await auth({ 'x-forwarded-method': 'POST', 'x-forwarded-uri': '/orders/7?x=%2F' })).status, 401)
    await a.client.close()
  })
  it('checks the signature on a cached admission too', async () => {
    const a = await boundHandshake(target())
    const signed = { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', PATH) }
    for (let i = 0; i < 3; i++) assert.equal((await fetch(s.url + PATH, { headers: signed })).status, 200)
    assert.ok(s.authenticator.cacheSize > 0)
    const res = await fetch(s.url + PATH, { headers: { connectionId: a.connectionId } })
    assert.equal(res.status, 401)
    assert.deepEqual(await res.json(), { error: 'unauthorized' })
    await a.client.close()
  })
})

describe('per-connection quota (WSDS_ID_RATE_LIMIT)', () => {
  let s: TestServer
  const N = 5
  before(async () => (s = await startTestServer({ idRateLimit: N })))
  after(() => s?.close())

  it('passes N + burst requests, answers the next 429 with Retry-After, and refills', async () => {
    const { client, connectionId } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    const call = () => fetch(`${s.url}/api/greeting`, { headers: { connectionId } })
    // The bucket holds 2N; requests in this burst take well under a second, so at most a
    // few tokens refill meanwhile: 2N pass, and within the next few one is refused.
    const statuses: number[] = []
    for (let i = 0; i < 2 * N; i++) statuses.push((await call()).status)
    assert.deepEqual(statuses, Array(2 * N).fill(200))
    let refused: Response | undefined
    for (let i = 0; i < 2 * N && refused === undefined; i++) {
      const res = await call()
      if (res.status === 429) refused = res
      else await res.arrayBuffer()
    }
    assert.ok(refused, 'a request over the budget is refused')
    assert.deepEqual(await refused.json(), { error: 'rate-limited' })
    const retryAfter = refused.headers.get('retry-after')
    assert.match(retryAfter ?? '', /^[1-9]\d*$/)
    // Another connection has its own budget.
    const other = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    assert.equal((await fetch(`${s.url}/api/greeting`, { headers: { connectionId: other.connectionId } })).status, 200)
    await new Promise((r) => setTimeout(r, 1000))
    assert.equal((await call()).status, 200, 'the budget refills')
    const metrics = await (await fetch(s.metricsUrl)).text()
    assert.match(metrics, /wsds_auth_decisions_total\{[^}]*result="deny:rate-limited",mode="enforce"[^}]*\} [1-9]/)
    await Promise.all([client.close(), other.client.close()])
  })
})

describe('binding and quota settings', () => {
  it('defaults to optional binding, a 30 s window and no quota', () => {
    const config = loadConfig({})
    assert.equal(config.binding, 'optional')
    assert.equal(config.bindingWindowMs, 30_000)
    assert.equal(config.idRateLimit, null)
  })
  it('reads the variables and the flags', () => {
    const config = loadConfig({ WSDS_BINDING: 'required', WSDS_ID_RATE_LIMIT: '20' }, ['--binding-window-ms', '5000'])
    assert.deepEqual([config.binding, config.bindingWindowMs, config.idRateLimit], ['required', 5000, 20])
  })
  it('stops the start on a bad value, naming the variable', () => {
    assert.throws(() => loadConfig({ WSDS_BINDING: 'on' }), { code: 'ERR_CONFIG', message: /WSDS_BINDING/ })
    assert.throws(() => loadConfig({ WSDS_BINDING_WINDOW_MS: '10' }), { code: 'ERR_CONFIG', message: /WSDS_BINDING_WINDOW_MS/ })
    assert.throws(() => loadConfig({ WSDS_ID_RATE_LIMIT: '0' }), { code: 'ERR_CONFIG', message: /WSDS_ID_RATE_LIMIT/ })
  })
})
