/**
 * The Lambda handlers one by one, fed API Gateway's and Step Functions' event shapes, on
 * DynamoDB (dynalite) through the real AWS SDK. The `@connections` API and Step Functions
 * are small recording HTTP endpoints that the real SDK clients talk to.
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, beforeEach, describe, it } from 'node:test'
import { ApiGatewayManagementApiClient } from '@aws-sdk/client-apigatewaymanagementapi'
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb'
import { SFNClient } from '@aws-sdk/client-sfn'
import { SSMClient } from '@aws-sdk/client-ssm'
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager'
// @ts-expect-error no declaration file
import dynalite from 'dynalite'
import { readAwsConfig } from '../src/aws/config.ts'
import { createConnections } from '../src/aws/connections.ts'
import type { AwsDeps } from '../src/aws/deps.ts'
import type { AuthorizerEvent, WebSocketEvent } from '../src/aws/events.ts'
import { loadKeySets, parseKeySources } from '../src/aws/keys.ts'
import { createAuthorizer, greeting, stageWildcard } from '../src/aws/rest.ts'
import { createConnectionsTable } from '../src/aws/table.ts'
import { createTaskHandlers } from '../src/aws/tasks.ts'
import { createWebSocketHandlers, executionName, type ExecutionInput } from '../src/aws/websocket.ts'
import { createKeyRing } from '../src/core/keyring.ts'
import type { ChallengeMessage } from '../src/core/protocol.ts'
import { createRandomPool } from '../src/core/random.ts'
import { createDynamoDbStore, ensureTable } from '../src/stores/dynamodb.ts'
import { solve } from './helpers/ws-client.ts'
import { olderKeySet, testKeySet } from './helpers/server.ts'

const ORIGIN = 'https://app.wsds.test'
const TABLE = 'wsds-handlers'
const credentials = { accessKeyId: 'x', secretAccessKey: 'x' }

interface Recorded {
  method: string
  path: string
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** An HTTP endpoint that records requests and answers from `reply` (default 200 {}). */
async function recorder(reply: (r: Recorded) => { status: number; body?: unknown; headers?: Record<string, string> } = () => ({ status: 200, body: {} })) {
  const calls: Recorded[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const r = { method: req.method ?? '', path: decodeURIComponent(req.url ?? ''), headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      calls.push(r)
      const out = reply(r)
      const text = out.body === undefined ? '' : JSON.stringify(out.body)
      res.writeHead(out.status, { 'content-type': 'application/json', ...out.headers })
      res.end(text)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, calls, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

/** API Gateway's WebSocket event, as documented (requestContext fields the service sends). */
function wsEvent(routeKey: string, connectionId: string, extra: Partial<WebSocketEvent> = {}): WebSocketEvent {
  const eventType = routeKey === '$connect' ? 'CONNECT' : routeKey === '$disconnect' ? 'DISCONNECT' : 'MESSAGE'
  return {
    requestContext: {
      routeKey,
      eventType,
      connectionId,
      domainName: 'abc123.execute-api.eu-west-1.amazonaws.com',
      stage: 'live',
      requestId: 'Yf8bGH2XDoEFQ5g=',
      connectedAt: 1_700_000_000_000,
      identity: { sourceIp: '203.0.113.7' },
      ...(eventType === 'DISCONNECT' ? { disconnectStatusCode: 1001, disconnectReason: 'Going away' } : {}),
    },
    isBase64Encoded: false,
    ...extra,
  }
}
const message = (id: string, body: unknown, routeKey = (body as { action?: string })?.action ?? '$default') =>
  wsEvent(routeKey, id, { body: typeof body === 'string' ? body : JSON.stringify(body) })

let n = 0
/** Ids shaped like API Gateway's (base64 with `=` padding, sometimes `+` and `/`). */
const newId = () => `L0SM9cOF+/${String(++n).padStart(5, '0')}=`

describe('AWS Lambda handlers (dynalite, real SDK clients)', () => {
  let dynamoServer: Server
  let dynamo: DynamoDBClient
  let posts: Awaited<ReturnType<typeof recorder>>
  let sfnCalls: Awaited<ReturnType<typeof recorder>>
  let gone: Set<string>
  let sfnReply: (target: string) => { status: number; body?: unknown } | undefined
  const clock = { t: 1_700_000_000_000 }
  let deps: AwsDeps

  before(async () => {
    dynamoServer = (dynalite as (o: object) => Server)({ createTableMs: 0 })
    await new Promise<void>((r) => dynamoServer.listen(0, '127.0.0.1', r))
    dynamo = new DynamoDBClient({ endpoint: `http://127.0.0.1:${(dynamoServer.address() as AddressInfo).port}`, region: 'local', credentials })
    await ensureTable(dynamo, TABLE)
    gone = new Set()
    posts = await recorder((r) => {
      const id = r.path.split('/@connections/')[1] ?? ''
      if (gone.has(id)) return { status: 410, body: { message: 'Gone' }, headers: { 'x-amzn-errortype': 'GoneException' } }
      return { status: r.method === 'DELETE' ? 204 : 200 }
    })
    sfnCalls = await recorder((r) => {
      const target = String(r.headers['x-amz-target'] ?? '')
      return sfnReply(target) ?? { status: 200, body: target.endsWith('StartExecution') ? { executionArn: 'arn:aws:states:local:0:execution:m:x', startDate: 1 } : {} }
    })
    const config = readAwsConfig(
      { WSDS_TABLE: TABLE, WSDS_ALLOWED_ORIGINS: ORIGIN, WSDS_CHALLENGE_TIMEOUT_MS: '5000', WSDS_STATE_MACHINE_ARN: 'arn:aws:states:local:0:stateMachine:m', WSDS_KEYS_FILE: 'ssm:/wsds/x' },
      { keys: true, stateMachine: true },
    )
    deps = {
      config,
      store: createDynamoDbStore({ client: dynamo, tableName: TABLE, now: () => clock.t }),
      table: createConnectionsTable(dynamo, TABLE),
      connections: createConnections(new ApiGatewayManagementApiClient({ endpoint: posts.url + '/live', region: 'local', credentials })),
      sfn: new SFNClient({ endpoint: sfnCalls.url, region: 'local', credentials, maxAttempts: 1 }),
      keyRing: async () => createKeyRing([testKeySet, olderKeySet]),
      random: createRandomPool(),
      now: () => clock.t,
      log: () => {},
    }
  })
  beforeEach(() => {
    posts.calls.length = 0
    sfnCalls.calls.length = 0
    sfnReply = () => undefined
  })
  after(async () => {
    dynamo?.destroy()
    for (const s of [dynamoServer, posts?.server, sfnCalls?.server]) await new Promise((r) => s?.close(r))
  })

  const ws = () => createWebSocketHandlers(deps)
  const tasks = () => createTaskHandlers(deps)
  const framesTo = (id: string) => posts.calls.filter((c) => c.method === 'POST' && c.path.endsWith(`/@connections/${id}`)).map((c) => JSON.parse(c.body) as Record<string, unknown>)
  const deletesOf = (id: string) => posts.calls.filter((c) => c.method === 'DELETE' && c.path.endsWith(`/@connections/${id}`)).map((c) => Number(c.headers['x-wsds-close-code']))
  const sfnOps = () => sfnCalls.calls.map((c) => ({ op: String(c.headers['x-amz-target']).split('.')[1], body: JSON.parse(c.body) as Record<string, string> }))
  const connected = async () => {
    const id = newId()
    const res = await ws().connect(wsEvent('$connect', id, { headers: { Origin: ORIGIN, Host: 'abc123.execute-api.eu-west-1.amazonaws.com' } }))
    assert.equal(res.statusCode, 200)
    return id
  }
  /** $connect, hello, and the IssueChallenge task as the state machine would run it. */
  const challenged = async () => {
    const id = await connected()
    await ws().message(message(id, { action: 'hello', v: 1 }))
    const start = sfnOps().find((c) => c.op === 'StartExecution')!
    const input = JSON.parse(start.body.input!) as ExecutionInput
    await tasks().issueChallenge({ ...input, taskToken: `token-${id}` })
    const challenge = framesTo(id).find((f) => f.type === 'challenge') as unknown as ChallengeMessage
    return { id, challenge, input }
  }

  describe('$connect', () => {
    it('stores a pending record for an allowed Origin', async () => {
      const id = await connected()
      const record = await deps.store.get(id)
      assert.equal(record?.status, 'pending')
      assert.equal(record?.origin, ORIGIN)
      assert.equal(record?.expiresAt, clock.t + deps.config.connectionTtlMs)
    })
    it('refuses with 403 and stores nothing when the Origin is missing (no headers at all) or foreign', async () => {
      for (const headers of [undefined, {}, { Origin: 'https://evil.wsds.test' }, { Origin: ORIGIN + ':8443' }]) {
        const id = newId()
        const res = await ws().connect(wsEvent('$connect', id, headers === undefined ? {} : { headers }))
        assert.equal(res.statusCode, 403)
        assert.equal(await deps.store.get(id), null)
      }
    })
    it('reads the Origin header case-insensitively', async () => {
      const id = newId()
      assert.equal((await ws().connect(wsEvent('$connect', id, { headers: { origin: ORIGIN } }))).statusCode, 200)
    })
  })

  describe('message routes', () => {
    it('answers ping with pong', async () => {
      const id = await connected()
      await ws().message(message(id, { action: 'ping' }))
      assert.deepEqual(framesTo(id), [{ type: 'pong' }])
    })
    it('answers malformed bodies and unknown actions ($default) with bad-message, and keeps the socket', async () => {
      const id = await connected()
      for (const body of ['not json', '[1]', '{"action":"dance"}', '{"action":"hello","v":"1"}', '']) await ws().message(message(id, body, '$default'))
      await ws().message(wsEvent('$default', id, { body: Buffer.from('{"action":"ping"}').toString('base64'), isBase64Encoded: true }))
      const frames = framesTo(id)
      assert.equal(frames.length, 6)
      for (const f of frames) {
        assert.equal(f.type, 'error')
        assert.equal(f.code, 'bad-message')
      }
      assert.deepEqual(deletesOf(id), [])
    })
    it('closes with 1009 and sends nothing for a message over the size limit', async () => {
      const id = await connected()
      await ws().message(message(id, { action: 'ping', pad: 'x'.repeat(17 * 1024) }))
      assert.deepEqual(framesTo(id), [])
      assert.deepEqual(deletesOf(id), [1009])
    })
  })

  describe('hello', () => {
    it('sends connection, then starts one execution (no sleep) with a safe name and the deadline', async () => {
      const id = await connected()
      await ws().message(message(id, { action: 'hello', v: 1 }))
      assert.deepEqual(framesTo(id), [{ type: 'connection', connectionId: id }])
      const [start] = sfnOps()
      assert.equal(start?.op, 'StartExecution')
      assert.equal(start.body.stateMachineArn, deps.config.stateMachineArn)
      assert.match(start.body.name!, /^[A-Za-z0-9_-]{1,80}$/)
      assert.deepEqual(JSON.parse(start.body.input!), { connectionId: id, keySetId: 'test-current', hostname: 'app.wsds.test', timeoutMs: 5000 })
    })
    it('treats a second hello as a bad message', async () => {
      const id = await connected()
      await ws().message(message(id, { action: 'hello', v: 1 }))
      await ws().message(message(id, { action: 'hello', v: 1 }))
      assert.equal(framesTo(id).at(-1)?.code, 'bad-message')
      assert.equal(sfnOps().length, 1)
    })
    it('rejects an unsupported version (close 4400) and an unknown key set (stale-keyset, 4401) without an execution', async () => {
      const a = await connected()
      await ws().message(message(a, { action: 'hello', v: 2 }))
      assert.deepEqual(framesTo(a), [{ type: 'rejected', reason: 'unsupported-version' }])
      assert.deepEqual(deletesOf(a), [4400])
      const b = await connected()
      await ws().message(message(b, { action: 'hello', v: 1, keySet: 'gone-set' }))
      assert.deepEqual(framesTo(b), [{ type: 'connection', connectionId: b }, { type: 'rejected', reason: 'stale-keyset' }])
      assert.deepEqual(deletesOf(b), [4401])
      assert.equal(sfnOps().length, 0)
    })
    it('starts nothing when the socket is already gone', async () => {
      const id = await connected()
      gone.add(id)
      await ws().message(message(id, { action: 'hello', v: 1 }))
      assert.equal(sfnOps().length, 0)
    })
    it('maps connection ids to execution names one-to-one', () => {
      assert.match(executionName('L0SM9cOFvHcCIhw=', 5), /^L0SM9cOFvHcCIhw-5$/)
      assert.notEqual(executionName('a+b/', 1), executionName('a/b+', 1))
    })
  })

  describe('IssueChallenge task and answer', () => {
    it('sends a challenge bound to the task token, and a correct answer reports SendTaskSuccess verified', async () => {
      const { id, challenge } = await challenged()
      assert.equal(challenge.expiresInMs, 5000)
      const item = await dynamo.send(new GetItemCommand({ TableName: TABLE, Key: { connectionId: { S: id } } }))
      assert.equal(item.Item?.taskToken?.S, `token-${id}`)
      assert.equal(item.Item?.challengeToken?.S, challenge.token)
      sfnCalls.calls.length = 0
      await ws().message(message(id, { action: 'answer', token: challenge.token, result: await solve(challenge, testKeySet.keys, 'app.wsds.test') }))
      assert.deepEqual(sfnOps(), [{ op: 'SendTaskSuccess', body: { taskToken: `token-${id}`, output: '{"verdict":"verified"}' } }])
    })
    it('reports wrong-answer and bad-domain as SendTaskFailure, for the state machine to reject', async () => {
      for (const [hostname, reason] of [['evil.wsds.test', 'bad-domain'], ['app.wsds.test', 'wrong-answer']] as const) {
        const { id, challenge } = await challenged()
        sfnCalls.calls.length = 0
        const keys = reason === 'wrong-answer' ? olderKeySet.keys : testKeySet.keys
        await ws().message(message(id, { action: 'answer', token: challenge.token, result: await solve(challenge, keys, hostname) }))
        assert.equal(sfnOps()[0]?.op, 'SendTaskFailure')
        assert.equal(sfnOps()[0]?.body.error, reason)
      }
    })
    it('spends the token: the same answer twice gets bad-token and the connection is deleted (4401)', async () => {
      const { id, challenge } = await challenged()
      const result = await solve(challenge, testKeySet.keys, 'app.wsds.test')
      await ws().message(message(id, { action: 'answer', token: challenge.token, result }))
      await ws().message(message(id, { action: 'answer', token: challenge.token, result }))
      assert.deepEqual(framesTo(id).at(-1), { type: 'rejected', reason: 'bad-token' })
      assert.deepEqual(deletesOf(id), [4401])
      assert.equal(sfnOps().filter((c) => c.op === 'SendTaskSuccess').length, 1)
    })
    it('rejects an answer with no challenge outstanding as bad-token', async () => {
      const id = await connected()
      await ws().message(message(id, { action: 'answer', token: 'made-up', result: 'x' }))
      assert.deepEqual(framesTo(id), [{ type: 'rejected', reason: 'bad-token' }])
      assert.deepEqual(deletesOf(id), [4401])
    })
    it('reports an answer after the deadline as timeout, even when it is right', async () => {
      const { id, challenge } = await challenged()
      sfnCalls.calls.length = 0
      clock.t += 5001
      await ws().message(message(id, { action: 'answer', token: challenge.token, result: await solve(challenge, testKeySet.keys, 'app.wsds.test') }))
      assert.equal(sfnOps()[0]?.body.error, 'timeout')
    })
    it('rejects with timeout (4408) itself when the wait already timed out (TaskTimedOut)', async () => {
      const { id, challenge } = await challenged()
      sfnReply = (target) => (target.endsWith('SendTaskSuccess') ? { status: 400, body: { __type: 'TaskTimedOut', message: 'timed out' } } : undefined)
      posts.calls.length = 0
      await ws().message(message(id, { action: 'answer', token: challenge.token, result: await solve(challenge, testKeySet.keys, 'app.wsds.test') }))
      assert.deepEqual(framesTo(id), [{ type: 'rejected', reason: 'timeout' }])
      assert.deepEqual(deletesOf(id), [4408])
    })
    it('fails the task at once (ConnectionGone) when the connection is gone before the challenge', async () => {
      const { input } = await challenged()
      await ws().disconnect(wsEvent('$disconnect', input.connectionId))
      await assert.rejects(tasks().issueChallenge({ ...input, taskToken: 't' }), { name: 'ConnectionGone' })
    })
  })

  describe('$disconnect', () => {
    it('deletes the record and ends an outstanding wait with SendTaskFailure disconnected', async () => {
      const { id } = await challenged()
      sfnCalls.calls.length = 0
      const res = await ws().disconnect(wsEvent('$disconnect', id))
      assert.equal(res.statusCode, 200)
      assert.equal(await deps.store.get(id), null)
      assert.deepEqual(sfnOps(), [{ op: 'SendTaskFailure', body: { taskToken: `token-${id}`, error: 'disconnected', cause: 'socket closed' } }])
    })
    it('is a no-op for an unknown connection, and tolerates a wait that already ended', async () => {
      assert.equal((await ws().disconnect(wsEvent('$disconnect', newId()))).statusCode, 200)
      const { id } = await challenged()
      sfnReply = () => ({ status: 400, body: { __type: 'TaskTimedOut', message: 'timed out' } })
      assert.equal((await ws().disconnect(wsEvent('$disconnect', id))).statusCode, 200)
    })
  })

  describe('finish task', () => {
    it('marks the record verified and sends verified', async () => {
      const id = await connected()
      assert.deepEqual(await tasks().finish({ connectionId: id, outcome: 'verified' }), { outcome: 'verified', delivered: true })
      assert.equal((await deps.store.get(id))?.status, 'verified')
      assert.deepEqual(framesTo(id), [{ type: 'verified', connectionId: id }])
    })
    it('never resurrects a record deleted meanwhile, and sends nothing', async () => {
      const id = await connected()
      await ws().disconnect(wsEvent('$disconnect', id))
      assert.deepEqual(await tasks().finish({ connectionId: id, outcome: 'verified' }), { outcome: 'verified', delivered: false })
      assert.equal(await deps.store.get(id), null)
      assert.deepEqual(framesTo(id), [])
    })
    it('sends rejected with the PROTOCOL.md close code for each reason, nothing for a disconnect, and 1011 for internal errors', async () => {
      for (const [outcome, frames, codes] of [
        ['wrong-answer', [{ type: 'rejected', reason: 'wrong-answer' }], [4401]],
        ['bad-domain', [{ type: 'rejected', reason: 'bad-domain' }], [4401]],
        ['timeout', [{ type: 'rejected', reason: 'timeout' }], [4408]],
        ['disconnected', [], []],
        ['Lambda.Unknown', [], [1011]],
      ] as const) {
        const id = await connected()
        await tasks().finish({ connectionId: id, outcome })
        assert.deepEqual(framesTo(id), frames, outcome)
        assert.deepEqual(deletesOf(id), codes, outcome)
      }
    })
  })

  describe('REST authorizer and greeting', () => {
    const authEvent = (headers: Record<string, string> | null): AuthorizerEvent => ({
      type: 'REQUEST',
      methodArn: 'arn:aws:execute-api:eu-west-1:123456789012:abc123/live/GET/greeting',
      httpMethod: 'GET',
      path: '/greeting',
      headers,
    })
    it('allows a verified id for the whole stage, with the forward-auth context', async () => {
      const id = await connected()
      await tasks().finish({ connectionId: id, outcome: 'verified' })
      const out = await createAuthorizer(deps)(authEvent({ connectionid: id }))
      assert.equal(out.policyDocument.Statement[0]?.Effect, 'Allow')
      assert.equal(out.policyDocument.Statement[0]?.Resource, 'arn:aws:execute-api:eu-west-1:123456789012:abc123/live/*')
      assert.deepEqual(out.context, { verdict: 'allow', connectionId: id, origin: ORIGIN })
    })
    it('throws Unauthorized (401) for a missing, malformed, unknown or pending id', async () => {
      const pending = await connected()
      for (const headers of [null, {}, { connectionId: '!!' }, { connectionId: newId() }, { connectionId: pending }] as (Record<string, string> | null)[]) {
        await assert.rejects(createAuthorizer(deps)(authEvent(headers)), { message: 'Unauthorized' })
      }
    })
    it('fails (AUTHORIZER_FAILURE, 503) rather than admit when DynamoDB is unreachable', async () => {
      const dead = new DynamoDBClient({ endpoint: 'http://127.0.0.1:9', region: 'local', credentials, maxAttempts: 1 })
      const authorize = createAuthorizer({ ...deps, store: createDynamoDbStore({ client: dead, tableName: TABLE }) })
      await assert.rejects(authorize(authEvent({ connectionId: newId() })), { message: 'store-unavailable' })
      dead.destroy()
    })
    it('greets', async () => {
      assert.deepEqual(JSON.parse((await greeting({ httpMethod: 'GET', path: '/greeting', queryStringParameters: { who: 'Lambda' } })).body), { greeting: 'Hello, Lambda!' })
      assert.equal((await greeting({ httpMethod: 'POST', path: '/greeting' })).statusCode, 405)
      assert.equal(stageWildcard('arn:aws:execute-api:r:1:api/live/GET/a/b'), 'arn:aws:execute-api:r:1:api/live/*')
    })
  })

  describe('configuration', () => {
    it('loads key sets from files, SSM SecureStrings and Secrets Manager through the real clients', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'wsds-aws-keys-'))
      const file = join(dir, 'k.json')
      writeFileSync(file, JSON.stringify(testKeySet))
      const service = await recorder((r) => {
        const target = String(r.headers['x-amz-target'])
        const body = JSON.parse(r.body) as { Name?: string; SecretId?: string; WithDecryption?: boolean }
        if (target === 'AmazonSSM.GetParameter' && body.Name === '/wsds/older' && body.WithDecryption) return { status: 200, body: { Parameter: { Name: body.Name, Value: JSON.stringify(olderKeySet) } } }
        if (target === 'secretsmanager.GetSecretValue' && body.SecretId === 'wsds/current') return { status: 200, body: { SecretString: JSON.stringify(testKeySet) } }
        return { status: 400, body: { __type: 'ParameterNotFound', message: 'no' } }
      })
      const clients = {
        ssm: () => new SSMClient({ endpoint: service.url, region: 'local', credentials }),
        secretsManager: () => new SecretsManagerClient({ endpoint: service.url, region: 'local', credentials }),
      }
      const sets = await loadKeySets(parseKeySources(`secretsmanager:wsds/current, ssm:/wsds/older,${file}`), clients)
      assert.deepEqual(sets.map((s) => s.id), ['test-current', 'test-older', 'test-current'])
      await assert.rejects(loadKeySets(['ssm:/wsds/missing'], clients), { code: 'ERR_CONFIG' })
      await new Promise((r) => service.server.close(r))
    })
    it('validates the environment with the shared names', () => {
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'x' }), { code: 'ERR_CONFIG' })
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'table', WSDS_CHALLENGE_TIMEOUT_MS: 'soon' }), { code: 'ERR_CONFIG' })
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'table' }, { keys: true }), { code: 'ERR_CONFIG' })
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'table' }, { stateMachine: true }), { code: 'ERR_CONFIG' })
      assert.equal(readAwsConfig({ WSDS_TABLE: 'table', WSDS_CHALLENGE_TIMEOUT_MS: '7000' }).challengeTimeoutMs, 7000)
    })
  })
})
