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
import { createAuthorizer, greeting, stageWildcard, targetOf } from '../src/aws/rest.ts'
import { ALIAS_PREFIX, createConnectionsTable } from '../src/aws/table.ts'
import { createTaskHandlers } from '../src/aws/tasks.ts'
import { executionName, type TimerInput } from '../src/aws/session.ts'
import { createWebSocketHandlers } from '../src/aws/websocket.ts'
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
  /** $connect with an API-Gateway-shaped id; returns both ids. */
  const connected = async () => {
    const gw = newId()
    const res = await ws().connect(wsEvent('$connect', gw, { headers: { Origin: ORIGIN, Host: 'abc123.execute-api.eu-west-1.amazonaws.com' } }))
    assert.equal(res.statusCode, 200)
    const id = await deps.table.resolve(gw)
    assert.ok(id)
    return { gw, id }
  }
  /** $connect, hello, and the Wait task's arm as the state machine would run it. */
  const challenged = async () => {
    const c = await connected()
    await ws().message(message(c.gw, { action: 'hello', v: 1 }))
    const start = sfnOps().find((x) => x.op === 'StartExecution')!
    const input = JSON.parse(start.body.input!) as TimerInput
    await tasks().timer({ op: 'arm', ...input, taskToken: `token-${c.id}` })
    const challenge = framesTo(c.gw).find((f) => f.type === 'challenge') as unknown as ChallengeMessage
    return { ...c, input, challenge }
  }
  const item = async (key: string) => (await dynamo.send(new GetItemCommand({ TableName: TABLE, Key: { connectionId: { S: key } }, ConsistentRead: true }))).Item

  describe('$connect', () => {
    it('mints our own 128-bit URL-safe id, keeps API Gateway\'s in the record, and stores a lookup from it', async () => {
      const { gw, id } = await connected()
      assert.match(id, /^[A-Za-z0-9_-]{22}$/)
      assert.notEqual(id, gw)
      const record = await deps.store.get(id)
      assert.equal(record?.status, 'pending')
      assert.equal(record?.origin, ORIGIN)
      assert.equal((await item(id))?.gatewayId?.S, gw)
      assert.equal((await item(ALIAS_PREFIX + gw))?.target?.S, id)
      // The alias is not a record: the store never admits or counts it.
      assert.equal(await deps.store.get(ALIAS_PREFIX + gw), null)
    })
    it('refuses with 403 and stores nothing when the Origin is missing (no headers at all) or foreign', async () => {
      for (const headers of [null, { Origin: 'https://evil.test' }]) {
        const gw = newId()
        assert.equal((await ws().connect(wsEvent('$connect', gw, { headers }))).statusCode, 403)
        assert.equal(await item(ALIAS_PREFIX + gw), undefined)
      }
    })
  })

  describe('messages run the core lifecycle', () => {
    it('answers ping with pong, bad frames with bad-message, and keeps the socket', async () => {
      const { gw } = await connected()
      await ws().message(message(gw, { action: 'ping' }))
      await ws().message(message(gw, 'not json'))
      await ws().message(message(gw, { action: 'dance' }))
      assert.deepEqual(framesTo(gw).map((f) => f.type), ['pong', 'error', 'error'])
      assert.deepEqual(deletesOf(gw), [])
    })
    it('closes with 1009 and sends nothing for a message over the size limit', async () => {
      const { gw } = await connected()
      await ws().message(message(gw, { action: 'ping', pad: 'x'.repeat(20_000) }))
      assert.deepEqual(framesTo(gw), [])
      assert.deepEqual(deletesOf(gw), [1009])
    })
    it('hello: sends connection with OUR id, the challenge with the time left from the upgrade, then arms one deadline execution', async () => {
      const { gw, id } = await connected()
      clock.t += 1000
      await ws().message(message(gw, { action: 'hello', v: 1 }))
      const frames = framesTo(gw)
      assert.deepEqual(frames[0], { type: 'connection', connectionId: id })
      assert.equal(frames[1]?.type, 'challenge')
      assert.equal(frames[1]?.expiresInMs, 4000)
      const starts = sfnOps().filter((x) => x.op === 'StartExecution')
      assert.equal(starts.length, 1)
      const input = JSON.parse(starts[0]!.body.input!) as TimerInput
      assert.deepEqual(input, { connectionId: id, at: clock.t + 4000 })
      assert.match(starts[0]!.body.name!, /^[A-Za-z0-9_-]{1,80}$/)
      assert.equal(starts[0]!.body.name, executionName(id, input.at))
    })
    it('hello twice is bad-message; an unknown key set is stale-keyset (4401) with no execution', async () => {
      const { gw } = await connected()
      await ws().message(message(gw, { action: 'hello', v: 1 }))
      await ws().message(message(gw, { action: 'hello', v: 1 }))
      assert.equal(framesTo(gw).at(-1)?.type, 'error')
      const other = await connected()
      sfnCalls.calls.length = 0
      await ws().message(message(other.gw, { action: 'hello', v: 1, keySet: 'gone' }))
      assert.deepEqual(framesTo(other.gw).at(-1), { type: 'rejected', reason: 'stale-keyset' })
      assert.deepEqual(deletesOf(other.gw), [4401])
      assert.deepEqual(sfnOps(), [])
    })
    it('a failed StartExecution sends rejected timeout and closes 4408 (the SDK retries), instead of an "Internal server error" frame', async () => {
      const { gw } = await connected()
      sfnReply = (target) => (target.endsWith('StartExecution') ? { status: 400, body: { __type: 'ThrottlingException', message: 'slow down' } } : undefined)
      await ws().message(message(gw, { action: 'hello', v: 1 }))
      assert.deepEqual(framesTo(gw).map((f) => f.type), ['connection', 'challenge', 'rejected'])
      assert.deepEqual(framesTo(gw).at(-1), { type: 'rejected', reason: 'timeout' })
      assert.deepEqual(deletesOf(gw), [4408])
    })
    it('a right answer marks the record verified in the same write that spends the token, sends verified, and ends the wait', async () => {
      const { gw, id, challenge } = await challenged()
      sfnCalls.calls.length = 0
      await ws().message(message(gw, { action: 'answer', token: challenge.token, result: await solve(challenge, testKeySet.keys, 'app.wsds.test') }))
      assert.deepEqual(framesTo(gw).at(-1), { type: 'verified', connectionId: id })
      const rec = await item(id)
      assert.equal(rec?.status?.S, 'verified')
      assert.equal((JSON.parse(rec!.state!.S!) as { outstanding: unknown }).outstanding, null)
      assert.equal(rec?.taskToken, undefined)
      assert.deepEqual(sfnOps(), [{ op: 'SendTaskSuccess', body: { taskToken: `token-${id}`, output: '{"disarmed":true}' } }])
    })
    it('spends the token: the same answer twice gets bad-token and close 4401', async () => {
      const { gw, challenge } = await challenged()
      const result = await solve(challenge, testKeySet.keys, 'app.wsds.test')
      await ws().message(message(gw, { action: 'answer', token: challenge.token, result }))
      await ws().message(message(gw, { action: 'answer', token: challenge.token, result }))
      assert.deepEqual(framesTo(gw).at(-1), { type: 'rejected', reason: 'bad-token' })
      assert.deepEqual(deletesOf(gw), [4401])
    })
    it('an answer after the deadline is timeout (4408) even when right: the timer that did not run yet is applied first', async () => {
      const { gw, challenge } = await challenged()
      const result = await solve(challenge, testKeySet.keys, 'app.wsds.test')
      clock.t += 6000
      await ws().message(message(gw, { action: 'answer', token: challenge.token, result }))
      assert.deepEqual(framesTo(gw).at(-1), { type: 'rejected', reason: 'timeout' })
      assert.deepEqual(deletesOf(gw), [4408])
    })
  })

  describe('deadline task', () => {
    it('arm throws Disarmed when the verdict came first, so the machine ends without waiting', async () => {
      const { gw, id } = await connected()
      await ws().message(message(gw, { action: 'hello', v: 1 }))
      const input = JSON.parse(sfnOps().find((x) => x.op === 'StartExecution')!.body.input!) as TimerInput
      await assert.rejects(tasks().timer({ op: 'arm', connectionId: id, at: input.at + 1, taskToken: 't' }), { name: 'Disarmed' })
    })
    it('fire delivers the deadline: rejected timeout, close 4408; a stale fire does nothing', async () => {
      const { gw, input } = await challenged()
      assert.deepEqual(await tasks().timer({ op: 'fire', connectionId: input.connectionId, at: input.at - 1 }), { outcome: 'stale' })
      assert.deepEqual(await tasks().timer({ op: 'fire', ...input }), { outcome: 'timeout' })
      assert.deepEqual(framesTo(gw).at(-1), { type: 'rejected', reason: 'timeout' })
      assert.deepEqual(deletesOf(gw), [4408])
    })
  })

  describe('$disconnect', () => {
    it('deletes the record and its alias, and ends an armed wait', async () => {
      const { gw, id } = await challenged()
      sfnCalls.calls.length = 0
      await ws().disconnect(wsEvent('$disconnect', gw))
      assert.equal(await item(id), undefined)
      assert.equal(await item(ALIAS_PREFIX + gw), undefined)
      assert.deepEqual(sfnOps().map((x) => x.op), ['SendTaskSuccess'])
    })
    it('is a no-op for an unknown connection, and tolerates a wait that already ended', async () => {
      await ws().disconnect(wsEvent('$disconnect', newId()))
      const { gw } = await challenged()
      sfnReply = () => ({ status: 400, body: { __type: 'TaskTimedOut', message: 'late' } })
      await ws().disconnect(wsEvent('$disconnect', gw))
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
    const verified = async () => {
      const c = await challenged()
      await ws().message(message(c.gw, { action: 'answer', token: c.challenge.token, result: await solve(c.challenge, testKeySet.keys, 'app.wsds.test') }))
      return c
    }
    it('allows a verified id for the whole stage, with the forward-auth context', async () => {
      const { id } = await verified()
      const out = await createAuthorizer(deps)(authEvent({ connectionid: id }))
      assert.equal(out.policyDocument.Statement[0]?.Effect, 'Allow')
      assert.equal(out.policyDocument.Statement[0]?.Resource, 'arn:aws:execute-api:eu-west-1:123456789012:abc123/live/*')
      assert.deepEqual(out.context, { verdict: 'allow', connectionId: id, origin: ORIGIN })
    })
    it('throws Unauthorized (401) for a missing, malformed, unknown or pending id', async () => {
      const { id: pending } = await connected()
      for (const headers of [null, {}, { connectionId: '!!' }, { connectionId: newId() }, { connectionId: pending }] as (Record<string, string> | null)[]) {
        await assert.rejects(createAuthorizer(deps)(authEvent(headers)), { message: 'Unauthorized' })
      }
    })
    it('refuses a verified id whose socket API Gateway dropped without $disconnect (GetConnection 410), and deletes its record', async () => {
      const { gw, id } = await verified()
      gone.add(encodeURIComponent(gw))
      gone.add(gw)
      await assert.rejects(createAuthorizer(deps)(authEvent({ connectionId: id })), { message: 'Unauthorized' })
      assert.equal(await item(id), undefined)
      assert.equal(await item(ALIAS_PREFIX + gw), undefined)
      assert.ok(posts.calls.some((c) => c.method === 'GET' && c.path.endsWith(`/@connections/${gw}`)))
    })
    it('passes method, target with query and the WSDS-Signature header to the decision', () => {
      assert.equal(targetOf({ type: 'REQUEST', methodArn: 'x', path: '/greeting', multiValueQueryStringParameters: { who: ['Ada Lovelace', 'B&C'] } }), '/greeting?who=Ada+Lovelace&who=B%26C')
      assert.equal(targetOf({ type: 'REQUEST', methodArn: 'x', path: '/greeting', queryStringParameters: null }), '/greeting')
    })
    it('fails (AUTHORIZER_FAILURE, 503) rather than admit when DynamoDB is unreachable', async () => {
      const dead = new DynamoDBClient({ endpoint: 'http://127.0.0.1:9', region: 'local', credentials, maxAttempts: 1 })
      const authorize = createAuthorizer({ ...deps, table: createConnectionsTable(dead, TABLE) })
      await assert.rejects(authorize(authEvent({ connectionId: 'AAAAAAAAAAAAAAAAAAAAAA' })), { message: 'store-unavailable' })
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
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'table', WSDS_ALLOWED_ORIGINS: ORIGIN, WSDS_CHALLENGE_TIMEOUT_MS: 'soon' }), { code: 'ERR_CONFIG' })
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'table', WSDS_ALLOWED_ORIGINS: ORIGIN }, { keys: true }), { code: 'ERR_CONFIG' })
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'table', WSDS_ALLOWED_ORIGINS: ORIGIN }, { stateMachine: true }), { code: 'ERR_CONFIG' })
      // No port to derive a default allowlist from: a Lambda without origins would refuse every page.
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'table' }), { code: 'ERR_CONFIG', message: /WSDS_ALLOWED_ORIGINS/ })
      const config = readAwsConfig({ WSDS_TABLE: 'table', WSDS_ALLOWED_ORIGINS: ORIGIN, WSDS_CHALLENGE_TIMEOUT_MS: '7000' })
      assert.equal(config.challengeTimeoutMs, 7000)
      assert.deepEqual(config.corsOrigins, [ORIGIN])
      assert.deepEqual(readAwsConfig({ WSDS_TABLE: 'table', WSDS_ALLOWED_ORIGINS: ORIGIN, WSDS_CORS_ORIGINS: 'none' }).corsOrigins, [])
      assert.throws(() => readAwsConfig({ WSDS_TABLE: 'table', WSDS_ALLOWED_ORIGINS: ORIGIN, WSDS_CORS_ORIGINS: 'https://a.test/path' }), { code: 'ERR_CONFIG', message: /WSDS_CORS_ORIGINS/ })
    })
  })
})
