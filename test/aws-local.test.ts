/**
 * The shared PROTOCOL.md suite against the AWS deployment run locally (npm run aws:local's
 * stack, in-process): real handlers, local API Gateway, dynalite, the template's state
 * machine. Close codes are best effort on AWS (PROTOCOL.md, Close codes).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, it } from 'node:test'
import { startAwsLocal } from '../local/aws/stack.ts'
import { loadConfig } from '../src/server/config.ts'
import { eventually, protocolSuite } from './contracts/protocol-suite.ts'
import { writeKeySetFiles } from './helpers/node-process.ts'
import { FORBIDDEN_ORIGIN, TEST_ORIGIN, olderKeySet, testKeySet } from './helpers/server.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

protocolSuite('AWS deployment (local emulation)', async ({ challengeTimeoutMs }) => {
  // Authorizer cache off here: the suite checks 401 within 2 s of a close, and on AWS the
  // cache TTL is the revocation bound (test/aws-demo.test.ts runs with a cache).
  const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_DEMO: 'off', WSDS_AUTH_CACHE_TTL_MS: '0' })
  const local = await startAwsLocal({ ...base, keySets: [testKeySet, olderKeySet], challengeTimeoutMs })
  return {
    wsUrl: local.wsUrl,
    httpUrl: local.url,
    origin: TEST_ORIGIN,
    forbiddenOrigin: FORBIDDEN_ORIGIN,
    keySet: testKeySet,
    olderKeySet,
    protectedPath: '/api/greeting?who=Test',
    challengeTimeoutMs,
    exactCloseCodes: false,
    closesOnBadFrameFlood: false,
    countRecords: () => local.store.count(),
    close: () => local.close(),
  }
})

describe('npm run aws:local', () => {
  it('starts from the npm start configuration names and serves /healthz, /metrics, the demo, and the WebSocket at /wsds', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'local/aws/main.ts'], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', WSDS_KEYS_FILE: writeKeySetFiles([testKeySet]), WSDS_DEMO: 'on', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_CHALLENGE_TIMEOUT_MS: '3000', WSDS_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = new Promise((r) => child.once('exit', r))
    try {
      let out = ''
      const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no listening line:\n${out}`)), 20_000)
        child.stdout!.on('data', (c: Buffer) => {
          out += c.toString()
          const m = /^\{"event":"listening".*$/m.exec(out)
          if (m) {
            clearTimeout(timer)
            resolve(JSON.parse(m[0]) as Record<string, unknown>)
          }
        })
      })
      assert.equal(line.keySet, testKeySet.id)
      assert.equal(line.challengeTimeoutMs, 3000)
      // Records live in DynamoDB here, so the DynamoDB default TTL (5 s) applies.
      assert.equal(line.authorizerTtlSeconds, 5)
      const url = String(line.url)
      assert.equal((await fetch(url + '/healthz')).status, 200)
      assert.match(await (await fetch(url + '/')).text(), /<html/i)
      const { client } = await verifiedHandshake(url.replace('http', 'ws') + '/wsds', { origin: TEST_ORIGIN, keys: testKeySet.keys })
      await client.close()
      const metrics = await (await fetch(url + '/metrics')).text()
      assert.match(metrics, /^wsds_handshakes_total\{[^}]*\} 1$/m)
      assert.match(metrics, /^wsds_outcomes_total\{outcome="verified"[^}]*\} 1$/m)
      assert.match(metrics, /^# TYPE wsds_auth_decisions_total counter$/m)
    } finally {
      child.kill('SIGTERM')
      await exited
    }
  })
})

describe('AWS usage per session, measured on the local run (docs/aws.md cost figures)', () => {
  it('counts Lambda invocations, WebSocket messages, DynamoDB requests and state transitions per verified session', async (t) => {
    const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_DEMO: 'off', WSDS_AUTH_CACHE_TTL_MS: '5000' })
    const local = await startAwsLocal({ ...base, keySets: [testKeySet] })
    try {
      const sessions = 20
      const requestsPerSession = 5
      const handshakeMs: number[] = []
      for (let i = 0; i < sessions; i++) {
        const started = performance.now()
        const { client, connectionId } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
        handshakeMs.push(performance.now() - started)
        for (let r = 0; r < requestsPerSession; r++) assert.equal((await fetch(`${local.url}/api/greeting?who=x`, { headers: { connectionId } })).status, 200)
        await client.close()
      }
      await eventually(() => local.ws.openConnections === 0 && (local.counters.lambda.disconnect?.invocations ?? 0) === sessions, 2000, 'all disconnected')
      await eventually(async () => (await local.store.count()) === 0, 2000, 'records gone')
      const per = (n: number | undefined) => (n ?? 0) / sessions
      const lambda = Object.fromEntries(Object.entries(local.counters.lambda).map(([k, v]) => [k, per(v.invocations)]))
      const dynamo = Object.fromEntries(Object.entries(local.counters.dynamodb).filter(([k]) => k !== 'Scan').map(([k, v]) => [k, per(v)]))
      const usage = {
        lambda,
        lambdaMsAvg: Object.fromEntries(Object.entries(local.counters.lambda).map(([k, v]) => [k, Math.round((v.ms / v.invocations) * 10) / 10])),
        messagesIn: per(local.counters.messagesIn),
        messagesOut: per(local.counters.messagesOut),
        dynamodb: dynamo,
        stateTransitions: per(local.sfn.transitions),
        authorizerInvocations: per(local.rest.stats.authorizerInvocations),
        restRequests: per(local.rest.stats.requests),
        handshakeMsMedian: Math.round(handshakeMs.sort((a, b) => a - b)[sessions >> 1]!),
      }
      t.diagnostic(JSON.stringify(usage))
      // The handshake itself: 5 Lambda invocations (connect, message for hello and answer, the
      // timer's arm, disconnect), 5 messages, 2 puts + 3 updates + 2 deletes, 1 transition.
      assert.deepEqual(
        { connect: lambda.connect, message: lambda.message, timer: lambda.timer, disconnect: lambda.disconnect },
        { connect: 1, message: 2, timer: 1, disconnect: 1 },
      )
      assert.equal(usage.messagesIn, 2)
      assert.equal(usage.messagesOut, 3)
      assert.deepEqual({ put: dynamo.PutItem, update: dynamo.UpdateItem, del: dynamo.DeleteItem }, { put: 2, update: 3, del: 2 })
      assert.equal(usage.stateTransitions, 1)
      // 5 protected requests inside one TTL: one authorizer call, 5 greeting calls. GetItem: the
      // record for hello and for the answer (the alias is cached in the container), and one
      // for the authorizer (which also asks @connections whether the socket is open).
      assert.equal(usage.authorizerInvocations, 1)
      assert.equal(dynamo.GetItem, 3)
      assert.equal(lambda.greeting, requestsPerSession)
    } finally {
      await local.close()
    }
  })
})
