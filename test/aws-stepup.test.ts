/**
 * Policy rules and step-up on the AWS deployment run locally (npm run aws:local's stack,
 * in-process: real handlers, local API Gateway, dynalite, the template's state machine):
 *
 * - the policy rule table (test/contracts/policy-cases.ts) through the local REST API and the
 *   authorizer configured as the stack configures it with a rules file (no identity source,
 *   no cache, deny = 403), an upstream behind it as an `{proxy+}` HTTP integration;
 * - periodic re-challenges by the sweeper (src/aws/sweeper.ts) on its local schedule;
 * - the operator's re-challenge (the sweeper function invoked with `op: rechallenge`);
 * - proof of work (WSDS_POW_BITS) in the Lambda handlers' challenges.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { SSMClient } from '@aws-sdk/client-ssm'
import WebSocket from 'ws'
import { startAwsLocal, type AwsLocal } from '../local/aws/stack.ts'
import { readAwsConfig, type AwsConfig } from '../src/aws/config.ts'
import { createAuthorizer, loadPolicy } from '../src/aws/rest.ts'
import { sweepPeriodMs } from '../src/aws/sweeper.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { connect } from '../src/client/index.ts'
import { solvePow } from '../src/client/pow.ts'
import { loadConfig } from '../src/server/config.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { POLICY_JSON, policyCases, writePolicyFile, type PolicyCase } from './contracts/policy-cases.ts'
import { TEST_ORIGIN, testKeySet } from './helpers/server.ts'
import { openSocket, solve, verifiedHandshake, type TestClient } from './helpers/ws-client.ts'

const hostname = new URL(TEST_ORIGIN).hostname
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const start = (env: Record<string, string> = {}) => {
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_DEMO: 'off', WSDS_AUTH_CACHE_TTL_MS: '0', ...env })
  return startAwsLocal({ ...config, keySets: [testKeySet] })
}

/** The protected service: answers 200 with the path and the labels it was handed. */
async function startEcho(): Promise<{ server: Server; url: string }> {
  const server = createServer((req: IncomingMessage, res) => {
    req.resume()
    const body = JSON.stringify({ path: req.url, rule: req.headers['x-wsds-rule'] ?? null, verdict: req.headers['x-wsds-verdict'] ?? null })
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}
const stopServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })

const status = async (local: AwsLocal, connectionId: string) => (await fetch(`${local.url}/api/greeting`, { headers: { connectionId } })).status

/** ws's WebSocket with the page's Origin, for the SDK in Node. */
class PageSocket extends WebSocket {
  constructor(url: string) {
    super(url, { origin: TEST_ORIGIN })
  }
}
const evaluate = (code: string) => new Function('location', `return (${code})`)({ hostname })

/** Answers the next challenge on a scripted socket, the work included. */
async function answerChallenge(client: TestClient, timeoutMs = 5000): Promise<{ powBits: number | null }> {
  const c = await client.expect('challenge', timeoutMs)
  const work = c.pow ? await solvePow(c.token, c.pow.bits) : undefined
  client.send({ action: 'answer', token: c.token, result: await solve(c, testKeySet.keys, hostname), ...(work ? { pow: work } : {}) })
  await client.expect('verified')
  return { powBits: c.pow?.bits ?? null }
}

describe('AWS authorizer with a rules file (aws:local, the stack\'s configuration for rules)', () => {
  let echo: Awaited<ReturnType<typeof startEcho>>
  let local: AwsLocal
  let client: TestClient | null = null
  let id: string | null = null
  before(async () => {
    echo = await startEcho()
    // JSON, as npm run bundle:aws bundles it (a YAML file is converted at bundle time).
    local = await start({ WSDS_POLICY_FILE: writePolicyFile(POLICY_JSON, 'policy.json'), WSDS_UPSTREAM: echo.url, WSDS_AUTH_CACHE_TTL_MS: '5000' })
  })
  after(async () => {
    client?.ws.close()
    await local?.close()
    if (echo !== undefined) await stopServer(echo.server)
  })

  it('runs with no authorizer cache, whatever WSDS_AUTH_CACHE_TTL_MS says (every request reaches the rules)', () => {
    assert.equal(local.authorizerTtlSeconds, 0)
  })

  policyCases(() => ({
    async send(c: PolicyCase, connectionId: string | undefined) {
      const headers: Record<string, string> = { ...(c.headers ?? {}), ...(connectionId !== undefined ? { connectionId } : {}) }
      if (c.forwardedFor !== undefined) headers['x-forwarded-for'] = c.forwardedFor
      const res = await fetch(local.url + c.path, { method: c.method, headers })
      const body = await res.text()
      return { status: res.status, body, rule: res.status === 200 ? (JSON.parse(body) as { rule: string | null }).rule : null }
    },
    async verifiedId() {
      if (id === null) ({ client, connectionId: id } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys }))
      return id
    },
    // API Gateway's sourceIp is the address it saw (loopback here); a client's X-Forwarded-For
    // is never believed. The CIDR match on sourceIp is checked below.
    trustsForwardedFor: false,
    reportsRule: true,
  }))

  it('answers a denied path 403 {"error":"forbidden"} with CORS for the page, and never calls the upstream with it', async () => {
    const res = await fetch(`${local.url}/api/admin/users`, { headers: { origin: TEST_ORIGIN } })
    assert.equal(res.status, 403)
    assert.deepEqual(await res.json(), { error: 'forbidden' })
    assert.equal(res.headers.get('access-control-allow-origin'), TEST_ORIGIN)
  })

  it('forward auth (/wsds/auth) names the rule that admitted a request', async () => {
    const res = await fetch(`${local.url}/wsds/auth`, { headers: { 'x-wsds-service-token': 'mobile-app-token-7f3a9c' } })
    assert.equal(res.status, 204)
    assert.equal(res.headers.get('x-wsds-rule'), 'mobile-app')
    assert.equal(res.headers.get('x-wsds-verdict'), 'allow:policy')
  })
})

describe('AWS authorizer: CIDR rules match requestContext.identity.sourceIp', () => {
  let echo: Awaited<ReturnType<typeof startEcho>>
  let local: AwsLocal
  before(async () => {
    echo = await startEcho()
    const rules = JSON.stringify({ rules: [{ name: 'loopback-jobs', match: { cidr: ['127.0.0.0/8', '::1/128'] }, action: 'allow' }], default: 'verify' })
    local = await start({ WSDS_POLICY_FILE: writePolicyFile(rules, 'policy.json'), WSDS_UPSTREAM: echo.url })
  })
  after(async () => {
    await local?.close()
    if (echo !== undefined) await stopServer(echo.server)
  })

  it('admits a request without an id from an address in the block, and names the rule upstream', async () => {
    const res = await fetch(`${local.url}/api/jobs/nightly`, { method: 'POST' })
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { path: '/jobs/nightly', rule: 'loopback-jobs', verdict: 'allow:policy' })
  })
})

describe('AWS authorizer with rules in monitor mode (WSDS_MODE=monitor)', () => {
  let echo: Awaited<ReturnType<typeof startEcho>>
  let local: AwsLocal
  before(async () => {
    echo = await startEcho()
    local = await start({ WSDS_POLICY_FILE: writePolicyFile(POLICY_JSON, 'policy.json'), WSDS_UPSTREAM: echo.url, WSDS_MODE: 'monitor' })
  })
  after(async () => {
    await local?.close()
    if (echo !== undefined) await stopServer(echo.server)
  })

  it('blocks nothing and labels each verdict with X-WSDS-Verdict and the rule in X-WSDS-Rule', async () => {
    const seen = async (path: string) => {
      const res = await fetch(local.url + path)
      assert.equal(res.status, 200, path)
      return (await res.json()) as { rule: string | null; verdict: string | null }
    }
    assert.deepEqual(await seen('/api/admin/users'), { path: '/admin/users', rule: 'admin', verdict: 'deny:policy' })
    assert.deepEqual(await seen('/api/health'), { path: '/health', rule: 'health-probe', verdict: 'allow:policy' })
    const unmatched = await seen('/api/greeting')
    assert.equal(unmatched.rule || null, null)
    assert.match(String(unmatched.verdict), /^deny:/)
  })
})

describe('re-challenges on AWS (aws:local), WSDS_RECHALLENGE_MS=2000', () => {
  let local: AwsLocal
  before(async () => {
    local = await start({ WSDS_RECHALLENGE_MS: '2000', WSDS_CHALLENGE_TIMEOUT_MS: '1500' })
  })
  after(() => local?.close())

  it('keeps an SDK page that answers verified and admitted for 10 s, its requests never refused', async (t) => {
    const session = connect({ url: local.wsUrl, keys: testKeySet.keys, WebSocket: PageSocket as never, evaluate, reconnect: false })
    let challenges = 0
    let closed = false
    session.on('challenge', () => challenges++)
    session.on('closed', () => (closed = true))
    try {
      const id = await session.ready
      const until = Date.now() + 10_000
      let requests = 0
      while (Date.now() < until) {
        // Through the SDK: it signs (request binding) and must not hold requests back during a re-challenge.
        assert.equal((await session.fetch(`${local.url}/api/greeting`)).status, 200, `request ${requests}`)
        requests++
        await sleep(100)
      }
      assert.equal(session.verified, true)
      assert.equal(session.connectionId, id)
      assert.equal(closed, false)
      // 10 s at 2 s, the sweeper looking every second: at least 3 re-challenges after the first.
      t.diagnostic(JSON.stringify({ challenges, requests, sweeps: local.sweeps }))
      assert.ok(challenges >= 4, `${challenges} challenges in 10 s`)
      assert.ok(local.sweeps.rechallenged >= 3, JSON.stringify(local.sweeps))
      assert.ok(requests >= 20)
    } finally {
      session.close()
    }
  })

  it('closes a page that ignores the re-challenge (rejected timeout) and its id gets 401', async (t) => {
    const { client, connectionId } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    assert.equal(await status(local, connectionId), 200)
    const challenge = await client.expect('challenge', 5000)
    const sentAt = Date.now()
    // Still admitted while the re-challenge is outstanding, until its deadline.
    assert.equal(await status(local, connectionId), 200)
    assert.equal(challenge.expiresInMs, 1500)
    assert.equal((await client.expect('rejected', 5000)).reason, 'timeout')
    const closed = await client.closed
    // DeleteConnection carries the code in the emulation only (PROTOCOL.md: best effort on AWS).
    assert.equal(closed.code, 4408)
    // Closed by the sweeper: after the deadline, within one sweep period (1 s) plus margin.
    const late = Date.now() - sentAt
    t.diagnostic(`closed ${late} ms after the re-challenge arrived (deadline 1500 ms)`)
    assert.ok(late >= 1400 && late < 4500, `closed ${late} ms after the re-challenge`)
    assert.equal(await status(local, connectionId), 401)
    await eventually(async () => (await local.store.get(connectionId)) === null, 2000, 'record deleted')
  })

  it('refuses the id at the deadline even before the sweeper closes the socket', async () => {
    const { client, connectionId } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    const challenge = await client.expect('challenge', 5000)
    const deadline = Date.now() + challenge.expiresInMs
    // Poll past the deadline: every answer after it is 401, none before it is.
    let refusedAt: number | null = null
    while (refusedAt === null && Date.now() < deadline + 3000) {
      const s = await status(local, connectionId)
      if (s === 401) refusedAt = Date.now()
      else assert.ok(Date.now() < deadline + 50, `admitted ${Date.now() - deadline} ms after the deadline`)
      await sleep(50)
    }
    assert.ok(refusedAt !== null && refusedAt >= deadline - 100, 'refused at the deadline, not before')
    client.ws.close()
  })

  it('deletes the record of a socket API Gateway dropped without $disconnect, at its re-challenge deadline', async () => {
    const { client, connectionId } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    local.ws.dropDisconnects = true
    try {
      client.ws.terminate()
      await client.closed
      assert.notEqual(await local.store.get(connectionId), null, 'left behind by the lost $disconnect')
      // Re-challenge (the POST finds the socket gone), deadline 1.5 s later, then the sweep.
      await eventually(async () => (await local.store.get(connectionId)) === null, 9000, 'record deleted by the sweeper')
    } finally {
      local.ws.dropDisconnects = false
    }
  })

  it('counts what one re-challenge costs: 3 messages, 1 message-function invocation, DynamoDB calls', async (t) => {
    const { client } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    await answerChallenge(client, 5000)
    const before = { in: local.counters.messagesIn, out: local.counters.messagesOut, message: local.counters.lambda.message?.invocations ?? 0, dynamo: { ...local.counters.dynamodb }, executions: local.sfn.executions.size }
    const rounds = 3
    for (let i = 0; i < rounds; i++) await answerChallenge(client, 5000)
    const delta = (k: string) => ((local.counters.dynamodb[k] ?? 0) - (before.dynamo[k] ?? 0)) / rounds
    // Per re-challenge: challenge out + answer in + verified out; one message invocation.
    assert.equal((local.counters.messagesOut - before.out) / rounds, 2)
    assert.equal((local.counters.messagesIn - before.in) / rounds, 1)
    assert.equal(((local.counters.lambda.message?.invocations ?? 0) - before.message) / rounds, 1)
    // Writes: the sweeper's (challenge issued) and the answer's (verified again).
    assert.equal(delta('UpdateItem'), 2)
    // The re-challenge's deadline is the sweeper's: no Step Functions execution, no transition.
    assert.equal(local.sfn.executions.size, before.executions, 'no deadline executions')
    t.diagnostic(JSON.stringify({ perRechallenge: { UpdateItem: delta('UpdateItem'), GetItem: delta('GetItem'), Query: delta('Query') } }))
    client.ws.close()
  })
})

describe('operator re-challenge and proof of work on AWS (aws:local)', () => {
  let local: AwsLocal
  before(async () => {
    local = await start({ WSDS_POW_BITS: '6' })
  })
  after(() => local?.close())

  it('asks every challenge for WSDS_POW_BITS of work and verifies the answer that carries it', async () => {
    const client = await openSocket(local.wsUrl, { origin: TEST_ORIGIN })
    client.send({ action: 'hello', v: 1 })
    await client.expect('connection')
    assert.deepEqual(await answerChallenge(client), { powBits: 6 })
    client.ws.close()
  })

  it('rejects an answer without the work (wrong-answer)', async () => {
    const client = await openSocket(local.wsUrl, { origin: TEST_ORIGIN })
    client.send({ action: 'hello', v: 1 })
    await client.expect('connection')
    const c = await client.expect('challenge')
    assert.equal(c.pow?.bits, 6)
    client.send({ action: 'answer', token: c.token, result: await solve(c, testKeySet.keys, hostname) })
    assert.equal((await client.expect('rejected')).reason, 'wrong-answer')
    await client.closed
  })

  it('re-challenges one id with extra work when the sweeper function is invoked with op: rechallenge', async () => {
    const client = await openSocket(local.wsUrl, { origin: TEST_ORIGIN })
    client.send({ action: 'hello', v: 1 })
    const { connectionId } = await client.expect('connection')
    await answerChallenge(client)
    assert.deepEqual(await local.invokeSweeper({ op: 'rechallenge', connectionId, powBits: 10 }), { rechallenged: 1 })
    // A second one while the first is outstanding is skipped: it must not move the deadline.
    assert.deepEqual(await local.invokeSweeper({ op: 'rechallenge', connectionId }), { rechallenged: 0 })
    assert.deepEqual(await answerChallenge(client), { powBits: 10 })
    assert.equal(await status(local, connectionId), 200)
    // Periodic re-challenges are off: the answered one leaves nothing for the sweeper.
    assert.equal((await local.sweeper.sweep()).due, 0)
    assert.deepEqual(await local.invokeSweeper({ op: 'rechallenge', origin: TEST_ORIGIN }), { rechallenged: 1 })
    assert.deepEqual(await answerChallenge(client), { powBits: 6 })
    await assert.rejects(local.invokeSweeper({ op: 'rechallenge' }), { code: 'ERR_CONFIG' })
    client.ws.close()
  })
})

describe('AWS configuration for step-up and rules', () => {
  it('reads WSDS_RECHALLENGE_MS and WSDS_POW_BITS with the server\'s bounds, and names a bad value', () => {
    const env = { WSDS_TABLE: 'wsds-connections', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN }
    const stepUpOf = (more: Record<string, string>) => {
      const c = readAwsConfig({ ...env, ...more })
      return { rechallengeMs: c.rechallengeMs, powBits: c.powBits }
    }
    assert.deepEqual(stepUpOf({}), { rechallengeMs: null, powBits: 0 })
    assert.deepEqual(stepUpOf({ WSDS_RECHALLENGE_MS: 'off', WSDS_POW_BITS: '0' }), { rechallengeMs: null, powBits: 0 })
    assert.equal(readAwsConfig({ ...env, WSDS_RECHALLENGE_MS: '300000', WSDS_POW_BITS: '12' }).rechallengeMs, 300000)
    assert.equal(readAwsConfig({ ...env, WSDS_POW_BITS: '12' }).powBits, 12)
    assert.throws(() => readAwsConfig({ ...env, WSDS_RECHALLENGE_MS: '500' }), (e: Error & { code?: string }) => e.code === 'ERR_CONFIG' && /WSDS_RECHALLENGE_MS/.test(e.message))
    assert.throws(() => readAwsConfig({ ...env, WSDS_POW_BITS: '40' }), (e: Error & { code?: string }) => e.code === 'ERR_CONFIG' && /WSDS_POW_BITS/.test(e.message))
    assert.equal(sweepPeriodMs(2000), 1000)
    assert.equal(sweepPeriodMs(300_000), 30_000)
    assert.equal(sweepPeriodMs(3_600_000), 60_000)
  })

  it('loads rules from an SSM parameter through the real client, retrying a failed load rather than skipping the rules', async () => {
    let value: string | null = null
    const ssmServer = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        const { Name, WithDecryption } = JSON.parse(body) as { Name: string; WithDecryption: boolean }
        const ok = value !== null && Name === '/wsds/policy' && WithDecryption
        res.writeHead(ok ? 200 : 400, { 'content-type': 'application/x-amz-json-1.1' })
        res.end(JSON.stringify(ok ? { Parameter: { Name, Value: value } } : { __type: 'ParameterNotFound', message: 'no such parameter' }))
      })
    })
    await new Promise<void>((r) => ssmServer.listen(0, '127.0.0.1', r))
    const ssm = new SSMClient({ endpoint: `http://127.0.0.1:${(ssmServer.address() as AddressInfo).port}`, region: 'local', credentials: { accessKeyId: 'l', secretAccessKey: 'l' }, maxAttempts: 1 })
    try {
      const policy = await loadPolicy('ssm:/wsds/policy', () => ssm).catch((e: Error) => e)
      assert.match(String(policy), /ParameterNotFound|no such parameter/)
      value = JSON.stringify({ rules: [{ name: 'bad', match: { path: '/x' }, action: 'maybe' }] })
      await assert.rejects(loadPolicy('ssm:/wsds/policy', () => ssm), (e: Error & { code?: string }) => e.code === 'ERR_POLICY' && /bad/.test(e.message))
      value = POLICY_JSON
      assert.equal((await loadPolicy('ssm:/wsds/policy', () => ssm)).active, true)
      // Through the authorizer: the first request fails (503) while the parameter is missing; the next one loads it.
      value = null
      const table = { load: async () => null, removeById: async () => null }
      const authorize = createAuthorizer({
        store: createMemoryStore(),
        table: table as never,
        connections: { alive: async () => true } as never,
        config: { mode: 'enforce', policyFile: 'ssm:/wsds/policy' } as AwsConfig,
        now: Date.now,
        log: () => {},
        ssm: () => ssm,
      })
      const probe = { type: 'REQUEST' as const, methodArn: 'arn:aws:execute-api:local:0:api/live/GET/api/health', httpMethod: 'GET', path: '/api/health', headers: {}, requestContext: { path: '/api/health', identity: { sourceIp: '192.0.2.1' } } }
      await assert.rejects(authorize(probe), (e: Error) => e.message !== 'Unauthorized')
      value = POLICY_JSON
      const allowed = await authorize(probe)
      assert.equal(allowed.policyDocument.Statement[0]!.Effect, 'Allow')
      assert.equal(allowed.context?.rule, 'health-probe')
    } finally {
      ssm.destroy()
      await stopServer(ssmServer)
    }
  })
})
