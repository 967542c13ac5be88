/**
 * PROTOCOL.md "Challenge forms", checked from the outside like protocol-suite.ts: every
 * deployment (self-hosted, cluster, `npm run aws:local`) runs it with a target started twice,
 * once with the default WSDS_CHALLENGE_FORMS (code,program) and once with `program` only.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { decodeProgram } from '../../src/core/program.ts'
import type { ChallengeForm } from '../../src/core/protocol.ts'
import { openSocket, solve, verifiedHandshake, type TestClient } from '../helpers/ws-client.ts'
import type { ProtocolTarget } from './protocol-suite.ts'

/** Starts a target whose gateway allows `forms` (WSDS_CHALLENGE_FORMS). */
export type StartFormsTarget = (options: { challengeTimeoutMs: number; challengeForms: readonly ChallengeForm[] }) => Promise<ProtocolTarget>

export function formsSuite(name: string, start: StartFormsTarget): void {
  describe(`PROTOCOL.md challenge forms: ${name}`, () => {
    let t: ProtocolTarget
    let programOnly: ProtocolTarget
    before(async () => {
      t = await start({ challengeTimeoutMs: 10_000, challengeForms: ['code', 'program'] })
      programOnly = await start({ challengeTimeoutMs: 10_000, challengeForms: ['program'] })
    })
    after(async () => {
      await t?.close()
      await programOnly?.close()
    })

    const hostname = () => new URL(t.origin).hostname
    const api = (target: ProtocolTarget, connectionId: string) =>
      fetch(target.httpUrl + target.protectedPath, { headers: { connectionId } }).then((r) => {
        void r.body?.cancel()
        return r.status
      })

    async function hello(target: ProtocolTarget, forms?: unknown): Promise<TestClient> {
      const client = await openSocket(target.wsUrl, { origin: target.origin })
      client.send(forms === undefined ? { action: 'hello', v: 1 } : { action: 'hello', v: 1, forms })
      return client
    }

    async function expectRefused(client: TestClient, target: ProtocolTarget): Promise<void> {
      await client.expect('connection')
      const rejected = await client.expect('rejected')
      assert.equal(rejected.reason, 'unsupported-form')
      const closed = await client.closed
      if (target.exactCloseCodes) assert.equal(closed.code, 4400)
    }

    it('sends a code challenge when hello has no forms, and the id is admitted once answered', async () => {
      const client = await hello(t)
      await client.expect('connection')
      const challenge = await client.expect('challenge')
      assert.ok(challenge.form === undefined || challenge.form === 'code')
      assert.equal(typeof (challenge as { code?: unknown }).code, 'string')
      await client.close()
    })

    for (const [forms, expected] of [
      [['program'], 'program'],
      [['program', 'code'], 'program'],
      [['code', 'program'], 'code'],
      [['wasm', 'program'], 'program'],
    ] as const) {
      it(`offers the first allowed form of ${JSON.stringify(forms)}: ${expected}; verifies and admits the id`, async () => {
        const { client, connectionId } = await verifiedHandshake(t.wsUrl, { origin: t.origin, keys: t.keySet.keys, forms: [...forms] })
        assert.equal(await api(t, connectionId), 200)
        await client.close()
        const again = await hello(t, forms)
        await again.expect('connection')
        const challenge = await again.expect('challenge')
        assert.equal(challenge.form ?? 'code', expected)
        await again.close()
      })
    }

    it('a program challenge is JSON the SDK decoder accepts, and it never carries the keys', async () => {
      const client = await hello(t, ['program'])
      await client.expect('connection')
      const challenge = await client.expect('challenge')
      assert.equal(challenge.form, 'program')
      if (challenge.form !== 'program') return
      assert.ok(decodeProgram(challenge.program, t.keySet.keys.length))
      const text = JSON.stringify(challenge.program)
      for (const key of t.keySet.keys) assert.ok(!text.includes(key))
      await client.close()
    })

    it('rejects a wrong program answer with wrong-answer and one from another hostname with bad-domain', async () => {
      for (const [result, reason] of [
        [async () => '0'.repeat(8) + '.' + '0'.repeat(32), 'bad-domain'],
        [async (c: Parameters<typeof solve>[0]) => solve(c, t.keySet.keys, 'other.example'), 'bad-domain'],
        [async (c: Parameters<typeof solve>[0]) => solve(c, [...t.keySet.keys].reverse(), hostname()), 'wrong-answer'],
      ] as const) {
        const client = await hello(t, ['program'])
        await client.expect('connection')
        const challenge = await client.expect('challenge')
        client.send({ action: 'answer', token: challenge.token, result: await result(challenge) })
        const rejected = await client.expect('rejected')
        assert.equal(rejected.reason, reason)
        const closed = await client.closed
        if (t.exactCloseCodes) assert.equal(closed.code, 4401)
      }
    })

    it('rejects with unsupported-form and 4400 when no offered form is allowed', async () => {
      await expectRefused(await hello(t, ['wasm']), t)
      await expectRefused(await hello(t, []), t)
      await expectRefused(await hello(programOnly), programOnly)
      await expectRefused(await hello(programOnly, ['code']), programOnly)
    })

    it('with program only allowed, a client offering code first still gets program', async () => {
      const { client, connectionId } = await verifiedHandshake(programOnly.wsUrl, { origin: programOnly.origin, keys: programOnly.keySet.keys, forms: ['code', 'program'] })
      assert.equal(await api(programOnly, connectionId), 200)
      await client.close()
    })
  })
}
