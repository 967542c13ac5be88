/**
 * PROTOCOL.md "Request binding", checked from the outside by a client written from that page
 * alone with WebCrypto (nothing from src/core/binding.ts or the SDK), as the independent
 * conformance client would. One suite for every deployment: the self-hosted gateway, a Redis
 * cluster (socket on one node, requests on another), and the AWS local run.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { KeySet } from '../../src/core/keyset.ts'
import { openSocket, solve, type TestClient } from '../helpers/ws-client.ts'

export type BindingModeName = 'off' | 'optional' | 'required'

export interface BindingTarget {
  /** ws://host:port/wsds */
  wsUrl: string
  /** Base URL the REST requests go to (another node than the socket's, in a cluster). */
  restUrl: string
  origin: string
  keySet: KeySet
  /** Request-target (origin-form) of a protected resource answering 200, as the client sends and signs it. */
  protectedPath: string
  /** The gateway's WSDS_BINDING_WINDOW_MS. */
  windowMs: number
  /** Self-hosted closes with exactly 4400; on AWS the close code is best effort. */
  exactCloseCodes: boolean
  close(): Promise<void>
}

export type StartBindingTarget = (options: { binding: BindingModeName }) => Promise<BindingTarget>

const subtle = globalThis.crypto.subtle
const utf8 = (text: string) => new TextEncoder().encode(text)
const b64url = (bytes: ArrayBuffer | Uint8Array) => Buffer.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)).toString('base64url')

/** A client key pair and its `hello.bind`. */
export async function bindOffer(): Promise<{ pair: CryptoKeyPair; bind: { alg: string; key: string } }> {
  const pair = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits'])
  return { pair, bind: { alg: 'ECDH-P256', key: b64url(await subtle.exportKey('raw', pair.publicKey)) } }
}

/** K_req = HKDF-SHA256(IKM = Z, salt = UTF-8(connectionId), info = "wsds/1 request binding", L = 32), as an HMAC key. */
export async function requestKeyOf(pair: CryptoKeyPair, serverKey: string, connectionId: string): Promise<CryptoKey> {
  const peer = await subtle.importKey('raw', Buffer.from(serverKey, 'base64url'), { name: 'ECDH', namedCurve: 'P-256' }, false, [])
  const z = await subtle.deriveBits({ name: 'ECDH', public: peer }, pair.privateKey, 256)
  const ikm = await subtle.importKey('raw', z, 'HKDF', false, ['deriveBits'])
  const k = await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: utf8(connectionId), info: utf8('wsds/1 request binding') }, ikm, 256)
  return subtle.importKey('raw', k, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
}

/** S = base64url(HMAC-SHA256(K_req, "wsds/1\n" T "\n" METHOD "\n" TARGET "\n" connectionId)). */
export async function macOf(key: CryptoKey, t: number | string, method: string, target: string, connectionId: string): Promise<string> {
  return b64url(await subtle.sign('HMAC', key, utf8(`wsds/1\n${t}\n${method}\n${target}\n${connectionId}`)))
}

export interface BoundConnection {
  client: TestClient
  connectionId: string
  key: CryptoKey
  serverKey: string
  /** `WSDS-Signature` for a request, signed now unless `t` is given. */
  sign(method: string, target: string, t?: number): Promise<string>
}

/** hello with `bind`, challenge, answer, verified with `bind.key`, then K_req. */
export async function boundHandshake(target: BindingTarget): Promise<BoundConnection> {
  const { pair, bind } = await bindOffer()
  const client = await openSocket(target.wsUrl, { origin: target.origin })
  client.send({ action: 'hello', v: 1, keySet: target.keySet.id, bind })
  const connection = await client.expect('connection')
  const challenge = await client.expect('challenge')
  client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, target.keySet.keys, new URL(target.origin).hostname) })
  const verified = await client.expect('verified')
  assert.equal(verified.connectionId, connection.connectionId)
  assert.ok(verified.bind !== undefined, 'verified carries bind')
  assert.match(verified.bind.key, /^[A-Za-z0-9_-]{87}$/)
  const key = await requestKeyOf(pair, verified.bind.key, connection.connectionId)
  const connectionId = connection.connectionId
  return {
    client,
    connectionId,
    key,
    serverKey: verified.bind.key,
    sign: async (method, path, t = Date.now()) => `t=${t}, s=${await macOf(key, t, method, path, connectionId)}`,
  }
}

export function bindingSuite(name: string, start: StartBindingTarget): void {
  describe(`PROTOCOL.md request binding: ${name}`, () => {
    const targets: Partial<Record<BindingModeName, BindingTarget>> = {}
    before(async () => {
      // One at a time: a target may be several processes, and the machine may be busy.
      for (const binding of ['off', 'optional', 'required'] as const) targets[binding] = await start({ binding })
    })
    after(async () => {
      await Promise.all(Object.values(targets).map((t) => t?.close()))
    })

    const rest = (t: BindingTarget, headers: Record<string, string>, method = 'GET', path = t.protectedPath) =>
      fetch(t.restUrl + path, { method, headers })
    const expectUnauthorized = async (res: Response) => {
      assert.equal(res.status, 401)
      assert.deepEqual(await res.json(), { error: 'unauthorized' })
    }
    const expectRefused = async (client: TestClient, reason: string, exact: boolean) => {
      const rejected = await client.expect('rejected')
      assert.equal(rejected.reason, reason)
      const closed = await client.closed
      if (exact) assert.equal(closed.code, 4400)
    }

    describe('optional (the default)', () => {
      let t: BindingTarget
      let a: BoundConnection
      let b: BoundConnection
      before(async () => {
        t = targets.optional!
        ;[a, b] = await Promise.all([boundHandshake(t), boundHandshake(t)])
      })
      after(async () => {
        await Promise.all([a?.client.close(), b?.client.close()])
      })

      it('completes a bound handshake whose verified carries the gateway key', () => {
        assert.notEqual(a.serverKey, b.serverKey, 'a fresh ephemeral key per connection')
      })
      it('admits a signed request', async () => {
        const res = await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', t.protectedPath) })
        assert.equal(res.status, 200)
        await res.arrayBuffer()
      })
      it('admits parameters in any order, without spaces, with unknown keys', async () => {
        const now = Date.now()
        const s = await macOf(a.key, now, 'GET', t.protectedPath, a.connectionId)
        const res = await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': `v=1,s=${s} ,  t=${now},x=y` })
        assert.equal(res.status, 200)
        await res.arrayBuffer()
      })
      it('refuses the same id without the header with 401', async () => {
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId }))
      })
      it('refuses a bad MAC with 401', async () => {
        const now = Date.now()
        const s = await macOf(a.key, now + 1, 'GET', t.protectedPath, a.connectionId)
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': `t=${now}, s=${s}` }))
      })
      it('refuses a malformed header with 401', async () => {
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': 'garbage' }))
      })
      it('refuses a timestamp outside the window with 401, both ways', async () => {
        const old = Date.now() - t.windowMs - 5000
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', t.protectedPath, old) }))
        const future = Date.now() + t.windowMs + 5000
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', t.protectedPath, future) }))
      })
      it('refuses a request signed for another method with 401', async () => {
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('POST', t.protectedPath) }))
      })
      it('refuses a request signed for another target with 401', async () => {
        const other = t.protectedPath + (t.protectedPath.includes('?') ? '&x=1' : '?x=1')
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', other) }))
      })
      it("refuses a request signed with another connection's key with 401", async () => {
        const now = Date.now()
        const s = await macOf(b.key, now, 'GET', t.protectedPath, a.connectionId)
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': `t=${now}, s=${s}` }))
      })
      it('still admits an unbound connection by its id alone', async () => {
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        client.send({ action: 'hello', v: 1, keySet: t.keySet.id })
        const connection = await client.expect('connection')
        const challenge = await client.expect('challenge')
        client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, t.keySet.keys, new URL(t.origin).hostname) })
        const verified = await client.expect('verified')
        assert.equal(verified.bind, undefined)
        const res = await rest(t, { connectionId: connection.connectionId })
        assert.equal(res.status, 200)
        await res.arrayBuffer()
        await client.close()
      })
      for (const [what, bind] of [
        ['an unknown alg', async () => ({ ...(await bindOffer()).bind, alg: 'ECDH-P384' })],
        ['a key that is not on the curve', async () => {
          const raw = Buffer.from((await bindOffer()).bind.key, 'base64url')
          raw[64] = raw[64]! ^ 1
          return { alg: 'ECDH-P256', key: raw.toString('base64url') }
        }],
        ['a compressed point', async () => {
          const raw = Buffer.from((await bindOffer()).bind.key, 'base64url')
          const compressed = Buffer.concat([Buffer.from([2 + (raw[64]! & 1)]), raw.subarray(1, 33)])
          return { alg: 'ECDH-P256', key: compressed.toString('base64url') }
        }],
        ['a key that is not base64url', async () => ({ alg: 'ECDH-P256', key: '!'.repeat(87) })],
        ['a bind that is not an object', async () => 'ECDH-P256'],
      ] as const) {
        it(`answers ${what} with bad-binding and close 4400`, async () => {
          const client = await openSocket(t.wsUrl, { origin: t.origin })
          client.send({ action: 'hello', v: 1, keySet: t.keySet.id, bind: await bind() })
          await expectRefused(client, 'bad-binding', t.exactCloseCodes)
        })
      }
    })

    describe('required', () => {
      it('refuses an unbound hello with binding-required and close 4400', async () => {
        const t = targets.required!
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        client.send({ action: 'hello', v: 1, keySet: t.keySet.id })
        await expectRefused(client, 'binding-required', t.exactCloseCodes)
      })
      it('verifies and admits a bound connection', async () => {
        const t = targets.required!
        const a = await boundHandshake(t)
        const res = await rest(t, { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', t.protectedPath) })
        assert.equal(res.status, 200)
        await res.arrayBuffer()
        await expectUnauthorized(await rest(t, { connectionId: a.connectionId }))
        await a.client.close()
      })
    })

    describe('off', () => {
      it('ignores bind: verified carries none and the id alone is admitted', async () => {
        const t = targets.off!
        const { bind } = await bindOffer()
        const client = await openSocket(t.wsUrl, { origin: t.origin })
        client.send({ action: 'hello', v: 1, keySet: t.keySet.id, bind: { ...bind, alg: 'not-even-checked' } })
        const connection = await client.expect('connection')
        const challenge = await client.expect('challenge')
        client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, t.keySet.keys, new URL(t.origin).hostname) })
        const verified = await client.expect('verified')
        assert.equal(verified.bind, undefined)
        const res = await rest(t, { connectionId: connection.connectionId })
        assert.equal(res.status, 200)
        await res.arrayBuffer()
        await client.close()
      })
    })
  })
}
