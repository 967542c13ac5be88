/**
 * The deadline state machine, taken from the committed template (deploy/aws/template.json),
 * run locally by aws-local-stepfunctions with its Lambda task bound to the real handler:
 * one billed state (Wait) when a verdict comes in time, Wait -> Deadline when none does.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { GetItemCommand } from '@aws-sdk/client-dynamodb'
import { SFNClient, SendTaskSuccessCommand } from '@aws-sdk/client-sfn'
import { startAwsLocal, type AwsLocal } from '../local/aws/stack.ts'
import { readTemplate, stateMachineFromTemplate } from '../local/aws/template.ts'
import type { ChallengeMessage } from '../src/core/protocol.ts'
import { loadConfig } from '../src/server/config.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { TEST_ORIGIN, testKeySet } from './helpers/server.ts'
import { openSocket, solve, type TestClient } from './helpers/ws-client.ts'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('deadline state machine from the synthesized template (local ASL interpreter)', () => {
  let local: AwsLocal
  before(async () => {
    // 1100 ms deadline: the wait's TimeoutSeconds rounds it up to 2 s, which leaves room to
    // answer after the deadline while the wait is still open.
    const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_DEMO: 'off', WSDS_AUTH_CACHE_TTL_MS: '0' })
    local = await startAwsLocal({ ...base, keySets: [testKeySet], challengeTimeoutMs: 1100 })
  })
  after(() => local?.close())

  const start = async (): Promise<{ client: TestClient; id: string; challenge: ChallengeMessage }> => {
    const client = await openSocket(local.wsUrl, { origin: TEST_ORIGIN })
    client.send({ action: 'hello', v: 1 })
    const { connectionId: id } = await client.expect('connection')
    return { client, id, challenge: await client.expect('challenge') }
  }
  /** The execution armed for connection `id`, once it has ended. */
  const executionOf = async (id: string) => {
    let found: ReturnType<AwsLocal['sfn']['executions']['get']>
    await eventually(() => (found = [...local.sfn.executions.values()].find((e) => (e.input as { connectionId: string }).connectionId === id)) !== undefined, 2000, 'execution started')
    await found!.done
    return found!
  }
  const right = (c: ChallengeMessage) => solve(c, testKeySet.keys, 'app.wsds.test')

  it('uses the template definition with the deadline substituted: TimeoutSeconds 2, one Wait task and its catches', () => {
    const m = stateMachineFromTemplate(readTemplate(), { ChallengeTimeoutSeconds: '2' })
    const states = m.definition.States as Record<string, { TimeoutSeconds?: number; Resource?: string; Retry?: { MaxAttempts: number }[] }>
    assert.equal(m.definition.StartAt, 'Wait')
    assert.equal(states.Wait?.TimeoutSeconds, 2)
    assert.match(states.Wait?.Resource ?? '', /:lambda:invoke\.waitForTaskToken$/)
    assert.deepEqual(Object.keys(states).sort(), ['Deadline', 'Disarmed', 'Wait'])
    for (const name of ['Wait', 'Deadline']) for (const r of states[name]!.Retry ?? []) assert.ok(r.MaxAttempts <= 1, `${name} retries at most once`)
  })

  it('pass: the verdict ends the wait with SendTaskSuccess: one state (Wait), record verified', async () => {
    const { client, id, challenge } = await start()
    client.send({ action: 'answer', token: challenge.token, result: await right(challenge) })
    await client.expect('verified')
    const e = await executionOf(id)
    assert.equal(e.status, 'SUCCEEDED')
    assert.deepEqual(e.states, ['Wait'])
    assert.equal((await local.store.get(id))?.status, 'verified')
    await client.close()
  })

  it('fail: a wrong answer is rejected by the message handler (wrong-answer, 4401) and ends the wait', async () => {
    const { client, id, challenge } = await start()
    client.send({ action: 'answer', token: challenge.token, result: await right(challenge).then((r) => String(r).slice(0, 9) + '0'.repeat(32)) })
    assert.deepEqual(await client.expect('rejected'), { type: 'rejected', reason: 'wrong-answer' })
    assert.equal((await client.closed).code, 4401)
    const e = await executionOf(id)
    assert.deepEqual(e.states, ['Wait'])
    assert.equal(e.status, 'SUCCEEDED')
  })

  it('timeout: no answer goes Wait -> Deadline (States.Timeout), rejected timeout, close 4408, record gone', async () => {
    const { client, id } = await start()
    assert.deepEqual(await client.expect('rejected', 4000), { type: 'rejected', reason: 'timeout' })
    assert.equal((await client.closed).code, 4408)
    const e = await executionOf(id)
    assert.deepEqual(e.states, ['Wait', 'Deadline'])
    await eventually(async () => (await local.store.get(id)) === null, 2000, 'record deleted')
  })

  it('double answer: two answers with one token back to back: one verdict, the second is bad-token and revokes', async () => {
    const { client, id, challenge } = await start()
    const result = await right(challenge)
    client.send({ action: 'answer', token: challenge.token, result })
    client.send({ action: 'answer', token: challenge.token, result })
    const first = await client.expect('verified')
    assert.equal(first.connectionId, id)
    assert.deepEqual(await client.expect('rejected'), { type: 'rejected', reason: 'bad-token' })
    assert.equal((await client.closed).code, 4401)
    await executionOf(id)
    assert.equal([...local.sfn.executions.values()].filter((x) => (x.input as { connectionId: string }).connectionId === id).length, 1)
    await eventually(async () => (await local.store.get(id)) === null, 2000, 'record deleted')
  })

  it('answer after the deadline: a right answer at 1300 ms (deadline 1100 ms, wait open until 2 s) is rejected timeout', async () => {
    const { client, challenge } = await start()
    const result = await right(challenge)
    await sleep(1300)
    client.send({ action: 'answer', token: challenge.token, result })
    assert.deepEqual(await client.expect('rejected'), { type: 'rejected', reason: 'timeout' })
    assert.equal((await client.closed).code, 4408)
  })

  it('a task token used after its wait timed out gets TaskTimedOut from the local Step Functions endpoint', async () => {
    const { client, id } = await start()
    let taskToken: string | undefined
    await eventually(async () => {
      const item = await local.dynamo.send(new GetItemCommand({ TableName: local.tableName, Key: { connectionId: { S: id } }, ConsistentRead: true }))
      taskToken = item.Item?.taskToken?.S
      return taskToken !== undefined
    }, 2000, 'task token stored')
    await executionOf(id)
    const sfn = new SFNClient({ endpoint: local.sfn.endpoint, region: 'local', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } })
    await assert.rejects(sfn.send(new SendTaskSuccessCommand({ taskToken: taskToken!, output: '{}' })), { name: 'TaskTimedOut' })
    await assert.rejects(sfn.send(new SendTaskSuccessCommand({ taskToken: 'never-issued', output: '{}' })), { name: 'TaskDoesNotExist' })
    sfn.destroy()
    await client.closed
  })

  it('a socket closed during the wait ends the execution at once ($disconnect ends the wait), not at the timeout', async () => {
    const { client, id } = await start()
    await eventually(async () => {
      const item = await local.dynamo.send(new GetItemCommand({ TableName: local.tableName, Key: { connectionId: { S: id } }, ConsistentRead: true }))
      return item.Item?.taskToken?.S !== undefined
    }, 2000, 'task token stored')
    const started = performance.now()
    await client.close()
    const e = await executionOf(id)
    assert.ok(performance.now() - started < 1500, 'ended before the 2 s wait timeout')
    assert.deepEqual(e.states, ['Wait'])
    assert.equal(e.status, 'SUCCEEDED')
  })
})
