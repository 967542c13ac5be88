/**
 * Re-challenges (docs/protocol.md, "Step-up") on a real two-node cluster: `wsds serve`
 * processes sharing a real redis-server, sockets on node A and REST calls on node B.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { connect } from '../src/client/index.ts'
import { solvePow } from '../src/client/pow.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { startNodeProcess, writeKeySetFiles, type NodeProcess } from './helpers/node-process.ts'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { TEST_ORIGIN, testKeySet } from './helpers/server.ts'
import { requireBinary } from './helpers/services.ts'
import { solve, verifiedHandshake, type TestClient } from './helpers/ws-client.ts'

const redisBin = requireBinary('redis-server')
const keysFile = writeKeySetFiles([testKeySet])
const hostname = new URL(TEST_ORIGIN).hostname
const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const status = async (node: NodeProcess, connectionId: string) =>
  (await fetch(`${node.url}/api/greeting`, { headers: { connectionId } })).status
const baseEnv = (redis: RedisServer, extra: Record<string, string> = {}) => ({
  WSDS_STORE: redis.url,
  WSDS_KEYS_FILE: keysFile,
  WSDS_ALLOWED_ORIGINS: TEST_ORIGIN,
  WSDS_RATE_LIMIT: 'off',
  ...extra,
})
/** ws's WebSocket with the page's Origin, for the SDK in Node. */
class PageSocket extends WebSocket {
  constructor(url: string) {
    super(url, { origin: TEST_ORIGIN })
  }
}
const evaluate = (code: string) => new Function('location', `return (${code})`)({ hostname })

/** Answers every challenge on a scripted socket, the work included. */
async function answerChallenge(client: TestClient, timeoutMs = 5000): Promise<{ powBits: number | null }> {
  const c = await client.expect('challenge', timeoutMs)
  const work = c.pow ? await solvePow(c.token, c.pow.bits) : undefined
  client.send({ action: 'answer', token: c.token, result: await solve(c, testKeySet.keys, hostname), ...(work ? { pow: work } : {}) })
  await client.expect('verified')
  return { powBits: c.pow?.bits ?? null }
}

describe('re-challenges on a two-node Redis cluster', { skip: redisBin.skip }, () => {
  let redis: RedisServer
  before(async () => (redis = await startRedisServer(redisBin.path!)))
  after(() => redis?.stop())

  describe('periodic, WSDS_RECHALLENGE_MS=2000', () => {
    let a: NodeProcess
    let b: NodeProcess
    before(async () => {
      const env = baseEnv(redis, { WSDS_RECHALLENGE_MS: '2000', WSDS_CHALLENGE_TIMEOUT_MS: '1500' })
      ;[a, b] = await Promise.all([startNodeProcess(env), startNodeProcess(env)])
    })
    after(() => Promise.all([a?.stop(), b?.stop()]))

    it('keeps an SDK page that answers verified and admitted on both nodes for 10 s, requests never interrupted', async () => {
      const session = connect({ url: a.wsUrl, keys: testKeySet.keys, WebSocket: PageSocket as never, evaluate, reconnect: false })
      let challenges = 0
      let closed = false
      session.on('challenge', () => challenges++)
      session.on('closed', () => (closed = true))
      try {
        const id = await session.ready
        const until = Date.now() + 10_000
        let requests = 0
        while (Date.now() < until) {
          // Through the SDK (it must not hold requests back during a re-challenge) and on the other node.
          const [viaSdk, viaB] = await Promise.all([session.fetch(`${a.url}/api/greeting`), status(b, id)])
          assert.equal(viaSdk.status, 200, `request ${requests} through the SDK`)
          assert.equal(viaB, 200, `request ${requests} on node B`)
          requests++
          await sleep(100)
        }
        assert.equal(session.verified, true)
        assert.equal(session.connectionId, id)
        assert.equal(closed, false)
        // 10 s at 2 s less at most 10% jitter: at least 4 re-challenges after the first challenge.
        assert.ok(challenges >= 5, `${challenges} challenges in 10 s`)
        assert.ok(requests >= 20)
      } finally {
        session.close()
      }
    })

    it('closes a page that ignores the re-challenge with 4408, and its id gets 401 on every node', async () => {
      const { client, connectionId } = await verifiedHandshake(a.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      // Warm node B's cache: revocation must beat a cached positive.
      assert.equal(await status(b, connectionId), 200)
      assert.equal(await status(b, connectionId), 200)
      const challenge = await client.expect('challenge', 4000)
      assert.equal(challenge.type, 'challenge')
      // Still admitted while the re-challenge is outstanding, until its deadline.
      assert.equal(await status(b, connectionId), 200)
      assert.equal((await client.expect('rejected', 4000)).reason, 'timeout')
      assert.equal((await client.closed).code, 4408)
      await eventually(async () => (await status(a, connectionId)) === 401, 1000, '401 on node A')
      await eventually(async () => (await status(b, connectionId)) === 401, 1000, '401 on node B')
    })
  })

  describe('operator re-challenges (WSDS_ADMIN_TOKEN)', () => {
    let a: NodeProcess
    let b: NodeProcess
    let adminB: string
    before(async () => {
      ;[a, b] = await Promise.all([
        startNodeProcess(baseEnv(redis, { WSDS_ADMIN_TOKEN: ADMIN_TOKEN })),
        // Node B serves metrics and operations on a port of its own.
        startNodeProcess(baseEnv(redis, { WSDS_ADMIN_TOKEN: ADMIN_TOKEN, WSDS_METRICS_PORT: '0' })),
      ])
      const m = /"metrics":"(http:\/\/[^"]+)\/metrics"/.exec(b.output())
      assert.ok(m, 'node B logs its metrics URL')
      adminB = m[1]!
    })
    after(() => Promise.all([a?.stop(), b?.stop()]))

    const post = (base: string, body: unknown, token: string | null = ADMIN_TOKEN) =>
      fetch(`${base}/wsds/admin/rechallenge`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
        body: JSON.stringify(body),
      })

    it('re-challenges one id through another node, with proof of work, and the page stays admitted', async () => {
      const { client, connectionId } = await verifiedHandshake(a.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      const res = await post(adminB, { connectionId, powBits: 8 })
      assert.equal(res.status, 200)
      assert.deepEqual({ ...((await res.json()) as object), node: 'x' }, { node: 'x', rechallenged: 0, broadcast: true })
      assert.deepEqual(await answerChallenge(client, 2000), { powBits: 8 })
      assert.equal(await status(b, connectionId), 200)
      await client.close()
    })

    it('a page that fails the operator re-challenge is closed 4401 and revoked on every node', async () => {
      const { client, connectionId } = await verifiedHandshake(a.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      assert.equal(await status(b, connectionId), 200)
      assert.equal((await post(a.url, { connectionId })).status, 200)
      const c = await client.expect('challenge', 2000)
      client.send({ action: 'answer', token: c.token, result: 'nope' })
      assert.equal((await client.expect('rejected')).reason, 'wrong-answer')
      assert.equal((await client.closed).code, 4401)
      await eventually(async () => (await status(b, connectionId)) === 401, 1000, '401 on node B')
    })

    it('re-challenges by address, by origin and all at once, on every node', async () => {
      const pages = await Promise.all([a, b, a].map((n) => verifiedHandshake(n.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })))
      for (const body of [{ address: '127.0.0.1' }, { origin: TEST_ORIGIN }, { all: true }]) {
        assert.equal((await post(adminB, body)).status, 200, JSON.stringify(body))
        await Promise.all(pages.map((p) => answerChallenge(p.client, 2000)))
      }
      assert.equal(((await (await post(adminB, { origin: 'https://other.example' })).json()) as { rechallenged: number }).rechallenged, 0)
      await Promise.all(pages.map((p) => p.client.close()))
    })

    it('refuses a wrong or missing token (401), a bad body (400) and other methods (405)', async () => {
      assert.equal((await post(adminB, { all: true }, 'wrong-token-wrong-token')).status, 401)
      assert.equal((await post(adminB, { all: true }, null)).status, 401)
      const bad = await post(adminB, { all: true, connectionId: 'x' })
      assert.equal(bad.status, 400)
      assert.match(((await bad.json()) as { message: string }).message, /exactly one/)
      assert.equal((await post(adminB, { all: true, powBits: 99 })).status, 400)
      assert.equal((await fetch(`${adminB}/wsds/admin/rechallenge`)).status, 405)
      // Not on B's public port when metrics have a port of their own.
      assert.equal((await post(b.url, { all: true })).status, 404)
    })

    it('`wsds rechallenge` takes the token from stdin, never argv', async () => {
      const { client, connectionId } = await verifiedHandshake(a.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      const run = (args: string[], stdin: string, env: Record<string, string> = {}) =>
        new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
          const { WSDS_ADMIN_TOKEN: _, ...parentEnv } = process.env
          const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'rechallenge', ...args], { env: { ...parentEnv, ...env }, stdio: 'pipe' })
          let out = ''
          let err = ''
          child.stdout.on('data', (d: Buffer) => (out += d))
          child.stderr.on('data', (d: Buffer) => (err += d))
          child.on('exit', (code) => resolve({ code, out, err }))
          child.stdin.end(stdin)
        })
      const ok = await run(['--id', connectionId, '--url', adminB], ADMIN_TOKEN + '\n')
      assert.equal(ok.code, 0, ok.err)
      assert.equal((JSON.parse(ok.out) as { broadcast: boolean }).broadcast, true)
      await answerChallenge(client, 2000)
      const fromEnv = await run(['--all', '--url', adminB], '', { WSDS_ADMIN_TOKEN: ADMIN_TOKEN })
      assert.equal(fromEnv.code, 0, fromEnv.err)
      await answerChallenge(client, 2000)
      const argvToken = await run(['--all', '--url', adminB, '--token', ADMIN_TOKEN], '')
      assert.equal(argvToken.code, 2)
      assert.match(argvToken.err, /never taken from argv/)
      const wrong = await run(['--all', '--url', adminB], 'not-the-token-at-all\n')
      assert.equal(wrong.code, 1)
      assert.match(wrong.err, /401/)
      await client.close()
    })
  })
})
