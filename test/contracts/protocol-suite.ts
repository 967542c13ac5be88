/**
 * PROTOCOL.md, checked from the outside: one suite that every deployment runs (self-hosted
 * now, the AWS local run later), the way a conformance client would. Each target says
 * whether its close codes are exact (self-hosted) or best effort (API Gateway).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { CodeChallengeMessage } from '../../src/core/protocol.ts'
import type { KeySet } from '../../src/core/keyset.ts'
import { openSocket, solve, verifiedHandshake, type TestClient } from '../helpers/ws-client.ts'

export interface ProtocolTarget {
  /** ws://host:port/wsds */
  wsUrl: string
  /** http://host:port (REST, forward auth, health) */
  httpUrl: string
  /** An allowed origin, and one that is not allowed. */
  origin: string
  forbiddenOrigin: string
  /** The current key set, and an older one that is still accepted. */
  keySet: KeySet
  olderKeySet: KeySet
  /** Path (with query) of a protected resource answering 200 JSON when admitted. */
  protectedPath: string
  challengeTimeoutMs: number
  /** Self-hosted MUST use the PROTOCOL.md close codes; on AWS they are best effort. */
  exactCloseCodes: boolean
  /** Whether the gateway closes after more than 10 bad frames (a MAY). */
  closesOnBadFrameFlood: boolean
  /** Live connection records in the store, when the target can count them. */
  countRecords?: () => Promise<number>
  close(): Promise<void>
}

export type StartTarget = (options: { challengeTimeoutMs: number }) => Promise<ProtocolTarget>

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls `check` every 5 ms until it is true; fails after `withinMs`. Returns the time it took. */
export async function eventually(check: () => Promise<boolean> | boolean, withinMs: number, what: string): Promise<number> {
  const started = performance.now()
  for (;;) {
    if (await check()) return performance.now() - started
    if (performance.now() - started > withinMs) assert.fail(`${what} did not happen within ${withinMs} ms`)
    await sleep(5)
  }
}

export function protocolSuite(name: string, start: StartTarget): void {
  describe(`PROTOCOL.md conformance: ${name}`, () => {
    let t: ProtocolTarget
    let short: ProtocolTarget
    before(async () => {
      t = await start({ challengeTimeoutMs: 10_000 })
      short = await start({ challengeTimeoutMs: 400 })
    })
    after(async () => {
      await t?.close()
      await short?.close()
    })

    const rest = (headers: Record<string, string> = {}, path = t.protectedPath) => fetch(t.httpUrl + path, { headers })
    const expectClose = async (client: TestClient, code: number) => {
      const closed = await client.closed
      if (t.exactCloseCodes) assert.equal(closed.code, code)
    }
    const hello = async (client: TestClient, keySet?: string) => {
      client.send(keySet === undefined ? { action: 'hello', v: 1 } : { action: 'hello', v: 1, keySet })
      const connection = await client.expect('connection')
      const challenge = await client.expect('challenge')
      return { connection, challenge }
    }
    const hostname = () => new URL(t.origin).hostname

    describe('upgrade', () => {
      it('refuses a forbidden Origin with 403 and no socket', async () => {
        await assert.rejects(openSocket(t.wsUrl, { origin: t.forbiddenOrigin }), { status: 403 })
      })
      it('refuses a missing Origin with 403', async () => {
        await assert.rejects(openSocket(t.wsUrl), { status: 403 })
      })
    })

    describe('happy path', () => {
      it('verifies a correct answer and admits the id on REST until the socket closes', async () => {
        const { client, connectionId } = await verifiedHandshake(t.wsUrl, { origin: t.origin, keys: t.keySet.keys })
        assert.match(connectionId, /^[A-Za-z0-9_=+/-]{16,}$/)
        const ok = await rest({ connectionId })
        assert.equal(ok.status, 200)
        assert.equal(typeof (await ok.json()), 'object')
        await client.close()
        const ms = await eventually(async () => (await rest({ connectionId })).status === 401, 2000, '401 after close')
        assert.ok(ms < 2000)
      })
      it('sends connection before challenge, and expiresInMs within the deadline', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        const { connection, challenge } = await hello(client)
        assert.equal(typeof connection.connectionId, 'string')
        assert.equal(typeof challenge.token, 'string')
        assert.ok((challenge as CodeChallengeMessage).code.length > 0)
        assert.ok(Number.isInteger(challenge.expiresInMs) && challenge.expiresInMs > 0 && challenge.expiresInMs <= 10_000)
        await client.close()
      })
      it('accepts an older key set still on the ring, named in hello', async () => {
        const { client } = await verifiedHandshake(t.wsUrl, {
          origin: t.origin,
          keys: t.olderKeySet.keys,
          keySet: t.olderKeySet.id,
        })
        await client.close()
      })
      it('answers ping with pong before and after verification', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        client.send({ action: 'ping' })
        await client.expect('pong')
        await client.close()
      })
    })

    describe('REST authenticator', () => {
      it('answers 401 {"error":"unauthorized"} for a missing, unknown or pending id', async () => {
        for (const headers of [{}, { connectionId: 'AAAAAAAAAAAAAAAAAAAAAA' }, { connectionId: '!!bad id!!' }] as Record<string, string>[]) {
          const res = await rest(headers)
          assert.equal(res.status, 401)
          assert.deepEqual(await res.json(), { error: 'unauthorized' })
        }
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        const { connection } = await hello(client)
        const pending = await rest({ connectionId: connection.connectionId })
        assert.equal(pending.status, 401)
        await client.close()
      })
      it('forward auth answers 204 with the id for an admitted id and 401 otherwise', async () => {
        const { client, connectionId } = await verifiedHandshake(t.wsUrl, { origin: t.origin, keys: t.keySet.keys })
        const ok = await rest({ connectionId }, '/wsds/auth')
        assert.equal(ok.status, 204)
        assert.equal(ok.headers.get('x-wsds-connection-id'), connectionId)
        assert.equal(ok.headers.get('x-wsds-origin'), t.origin)
        assert.equal((await rest({}, '/wsds/auth')).status, 401)
        await client.close()
        await eventually(async () => (await rest({ connectionId }, '/wsds/auth')).status === 401, 2000, 'forward auth 401 after close')
      })
      it('serves /healthz', async () => {
        const res = await fetch(t.httpUrl + '/healthz')
        assert.equal(res.status, 200)
      })
    })

    describe('failures', () => {
      it('rejects a wrong answer with wrong-answer and close 4401, and never admits the id', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        const { connection, challenge } = await hello(client)
        client.send({ action: 'answer', token: challenge.token, result: '00000000.' + '0'.repeat(32) })
        const rejected = await client.expect('rejected')
        assert.ok(rejected.reason === 'wrong-answer' || rejected.reason === 'bad-domain')
        await expectClose(client, 4401)
        assert.equal((await rest({ connectionId: connection.connectionId })).status, 401)
      })
      it('rejects an answer computed with the wrong key set', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        const { challenge } = await hello(client)
        client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, t.olderKeySet.keys, hostname()) })
        assert.equal((await client.expect('rejected')).reason, 'wrong-answer')
        await expectClose(client, 4401)
      })
      it('rejects an answer computed on another hostname (bad-domain or wrong-answer)', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        const { challenge } = await hello(client)
        client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, t.keySet.keys, 'evil.example') })
        const { reason } = await client.expect('rejected')
        assert.ok(reason === 'bad-domain' || reason === 'wrong-answer', reason)
        await expectClose(client, 4401)
      })
      it("rejects another connection's token with bad-token, and that token stays usable on its own connection", async () => {
        const a = await openSocket(t.wsUrl, { origin: t.origin })
        const b = await openSocket(t.wsUrl, { origin: t.origin })
        const ca = await hello(a)
        await hello(b)
        b.send({ action: 'answer', token: ca.challenge.token, result: await solve(ca.challenge, t.keySet.keys, hostname()) })
        assert.equal((await b.expect('rejected')).reason, 'bad-token')
        await expectClose(b, 4401)
        a.send({ action: 'answer', token: ca.challenge.token, result: await solve(ca.challenge, t.keySet.keys, hostname()) })
        await a.expect('verified')
        await a.close()
      })
      it('rejects an answer before any challenge with bad-token', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        client.send({ action: 'answer', token: 'made-up-token', result: 'x' })
        assert.equal((await client.expect('rejected')).reason, 'bad-token')
        await expectClose(client, 4401)
      })
      it('rejects a second answer (spent token) on a verified connection and revokes it', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        const { connection, challenge } = await hello(client)
        const result = await solve(challenge, t.keySet.keys, hostname())
        client.send({ action: 'answer', token: challenge.token, result })
        await client.expect('verified')
        client.send({ action: 'answer', token: challenge.token, result })
        assert.equal((await client.expect('rejected')).reason, 'bad-token')
        await expectClose(client, 4401)
        await eventually(async () => (await rest({ connectionId: connection.connectionId })).status === 401, 2000, '401 after bad-token')
      })
      it('rejects a key set the gateway does not accept with stale-keyset', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        client.send({ action: 'hello', v: 1, keySet: 'no-such-set' })
        let message = await client.next()
        if (message?.type === 'connection') message = await client.next()
        assert.deepEqual(message, { type: 'rejected', reason: 'stale-keyset' })
        await expectClose(client, 4401)
      })
      it('rejects an unsupported protocol version with close 4400', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        client.send({ action: 'hello', v: 2 })
        assert.deepEqual(await client.expect('rejected'), { type: 'rejected', reason: 'unsupported-version' })
        await expectClose(client, 4400)
      })
      it('answers malformed frames with bad-message and keeps the socket usable', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        for (const frame of ['not json', '[1,2]', '{"action":"dance"}', '{"v":1}', '{"action":"hello","v":"1"}', '{"action":"hello"}']) {
          client.send(frame)
          const error = await client.expect('error')
          assert.equal(error.code, 'bad-message')
        }
        const { challenge } = await hello(client)
        client.send({ action: 'hello', v: 1 })
        assert.equal((await client.expect('error')).code, 'bad-message')
        client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, t.keySet.keys, hostname()) })
        await client.expect('verified')
        await client.close()
      })
      it('closes with 1009 on a message over the size limit', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        client.send(JSON.stringify({ action: 'ping', pad: 'x'.repeat(17 * 1024) }))
        const closed = await client.closed
        if (t.exactCloseCodes) assert.equal(closed.code, 1009)
      })
      it('closes with 4400 after more than 10 bad frames', async () => {
        if (!t.closesOnBadFrameFlood) return
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        for (let i = 0; i < 11; i++) client.send('garbage')
        await expectClose(client, 4400)
      })
      it('rejects with timeout and close 4408 when no answer comes in time', async () => {
        const client = await openSocket(short.wsUrl, { origin: short.origin })
        client.send({ action: 'hello', v: 1 })
        await client.expect('connection')
        const challenge = await client.expect('challenge')
        assert.ok(challenge.expiresInMs <= short.challengeTimeoutMs)
        assert.deepEqual(await client.expect('rejected', 5000), { type: 'rejected', reason: 'timeout' })
        const closed = await client.closed
        if (short.exactCloseCodes) assert.equal(closed.code, 4408)
      })
    })

    describe('load', () => {
      it('verifies 200 parallel handshakes from one address and leaves zero records after closing', async () => {
        const results = await Promise.all(
          Array.from({ length: 200 }, () => verifiedHandshake(t.wsUrl, { origin: t.origin, keys: t.keySet.keys })),
        )
        assert.equal(new Set(results.map((r) => r.connectionId)).size, 200)
        const sample = results[17]!.connectionId
        assert.equal((await rest({ connectionId: sample })).status, 200)
        await Promise.all(results.map((r) => r.client.close()))
        if (t.countRecords) await eventually(async () => (await t.countRecords!()) === 0, 5000, 'zero records')
        assert.equal((await rest({ connectionId: sample })).status, 401)
      })
    })
  })
}
