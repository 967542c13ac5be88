/** Structured logs: one JSON line per refusal or rejection, and never a secret in any line. */
import type { CodeChallengeMessage } from '../src/core/protocol.ts'
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { eventually } from './contracts/protocol-suite.ts'
import { FORBIDDEN_ORIGIN, TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { openSocket, solve } from './helpers/ws-client.ts'

describe('logs', () => {
  let s: TestServer
  const lines: string[] = []
  before(async () => {
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) })
    s = await startTestServer({}, { logger })
  })
  after(() => s.close())

  const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>)

  it('writes one JSON line per rejected handshake with its reason and remote address, and no key, token, answer or id', async () => {
    const client = await openSocket(s.wsUrl, { origin: TEST_ORIGIN })
    client.send({ action: 'hello', v: 1 })
    const { connectionId } = await client.expect('connection')
    const challenge = await client.expect('challenge')
    const rightAnswer = String(await solve(challenge, testKeySet.keys, 'app.wsds.test'))
    const wrong = rightAnswer.slice(0, 9) + (rightAnswer[9] === '0' ? '1' : '0') + rightAnswer.slice(10)
    client.send({ action: 'answer', token: challenge.token, result: wrong })
    assert.equal((await client.expect('rejected')).reason, 'wrong-answer')
    await client.closed
    await eventually(() => parsed().some((l) => l.event === 'rejected'), 1000, 'rejection logged')
    const rejections = parsed().filter((l) => l.event === 'rejected')
    assert.equal(rejections.length, 1)
    assert.equal(rejections[0]!.reason, 'wrong-answer')
    assert.equal(rejections[0]!.remote, '127.0.0.1')
    assert.match(String(rejections[0]!.conn), /^[A-Za-z0-9_-]{10}$/)

    const all = lines.join('\n')
    for (const key of testKeySet.keys) assert.ok(!all.includes(key), 'a key leaked into the logs')
    for (const secret of [challenge.token, connectionId, rightAnswer, wrong, (challenge as CodeChallengeMessage).code.slice(0, 40)]) {
      assert.ok(!all.includes(secret), `secret leaked into the logs: ${secret.slice(0, 12)}...`)
    }
  })

  it('writes one line per refused upgrade with the reason and remote address', async () => {
    const before = parsed().filter((l) => l.event === 'upgrade-refused').length
    await assert.rejects(openSocket(s.wsUrl, { origin: FORBIDDEN_ORIGIN }), { status: 403 })
    await eventually(() => parsed().filter((l) => l.event === 'upgrade-refused').length === before + 1, 1000, 'refusal logged')
    const line = parsed().filter((l) => l.event === 'upgrade-refused').at(-1)!
    assert.equal(line.reason, 'origin')
    assert.equal(line.remote, '127.0.0.1')
    assert.equal(line.origin, FORBIDDEN_ORIGIN)
  })

  it('every line is JSON with a level and a time', () => {
    for (const l of parsed()) {
      assert.equal(typeof l.level, 'number')
      assert.equal(typeof l.time, 'number')
    }
  })
})
