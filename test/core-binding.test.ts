/**
 * src/core/binding.ts, the lifecycle's hello.bind / verified.bind, and the front's binding
 * and quota steps, with fake clocks. The wire-level checks are in test/binding.test.ts.
 */
import assert from 'node:assert/strict'
import { createHmac, webcrypto } from 'node:crypto'
import { describe, it } from 'node:test'
import { createAuthenticator } from '../src/core/authenticator.ts'
import {
  checkRequestSignature,
  isP256Point,
  parseBindOffer,
  parseBindingMode,
  parseSignatureHeader,
  signingString,
} from '../src/core/binding.ts'
import { createFront } from '../src/core/front.ts'
import { keyedRequestMac as jsRequestMac } from '../src/core/request-mac.ts'
import { createKeyRing } from '../src/core/keyring.ts'
import { generateKeySet } from '../src/core/keyset.ts'
import { openConnection, transition, type Action, type ConnectionState, type LifecycleContext } from '../src/core/lifecycle.ts'
import { createQuota, parseIdRateLimit } from '../src/core/quota.ts'
import { createRandomPool } from '../src/core/random.ts'
import type { ConnectionRecord } from '../src/core/store.ts'
import { createNodeBinder, nodeRequestMac } from '../src/crypto/node-binding.ts'
import { createMemoryStore } from '../src/stores/memory.ts'

const publicKey = async () => {
  const pair = await webcrypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits'])
  return Buffer.from(await webcrypto.subtle.exportKey('raw', pair.publicKey)).toString('base64url')
}

describe('bind offer', () => {
  it('accepts a WebCrypto P-256 public key and refuses everything else', async () => {
    const key = await publicKey()
    assert.equal(parseBindOffer({ alg: 'ECDH-P256', key }), key)
    assert.equal(parseBindOffer({ alg: 'ECDH-P256', key, extra: 1 }), key)
    assert.equal(parseBindOffer({ alg: 'ecdh-p256', key }), null)
    assert.equal(parseBindOffer({ alg: 'ECDH-P256', key: key + '=' }), null)
    assert.equal(parseBindOffer({ alg: 'ECDH-P256', key: key.slice(1) }), null)
    assert.equal(parseBindOffer({ alg: 'ECDH-P256' }), null)
    assert.equal(parseBindOffer([key]), null)
    assert.equal(parseBindOffer(null), null)
    const raw = Buffer.from(key, 'base64url')
    raw[40] = raw[40]! ^ 0x10
    assert.equal(parseBindOffer({ alg: 'ECDH-P256', key: raw.toString('base64url') }), null, 'off the curve')
  })
  it('checks the curve equation and the field bound', () => {
    const p = Buffer.from('ffffffff00000001000000000000000000000000ffffffffffffffffffffffff', 'hex')
    assert.equal(isP256Point(Buffer.concat([Buffer.from([4]), p, Buffer.alloc(32)])), false)
    assert.equal(isP256Point(Buffer.alloc(65)), false)
  })
  it('parses the binding mode', () => {
    assert.equal(parseBindingMode('required'), 'required')
    assert.throws(() => parseBindingMode('on'), { code: 'ERR_CONFIG' })
  })
})

describe('WSDS-Signature header', () => {
  const s = 'A'.repeat(43)
  it('reads comma-separated k=v with optional spaces, in any order, ignoring unknown keys', () => {
    assert.deepEqual(parseSignatureHeader(`t=1700000000000, s=${s}`), { t: '1700000000000', time: 1700000000000, s })
    assert.deepEqual(parseSignatureHeader(` s = ${s} ,x=1,t=5, `), { t: '5', time: 5, s })
  })
  it('refuses missing, repeated or ill-formed parameters', () => {
    for (const bad of ['', `s=${s}`, 't=1', `t=1, t=2, s=${s}`, `t=-1, s=${s}`, `t=1.5, s=${s}`, `t=1, s=${s}=`, `t=1, s=${s.slice(1)}`, `t=1; s=${s}`, `t=1, s=${s}, ` + 'x'.repeat(600)]) {
      assert.equal(parseSignatureHeader(bad), null, bad)
    }
  })
  it('checks window first, then the MAC in constant time, over the exact string', () => {
    const key = Buffer.alloc(32, 7)
    const mac = nodeRequestMac(key)
    const t = 1_700_000_000_000
    const sig = createHmac('sha256', key).update(`wsds/1\n${t}\nGET\n/api/x?a=%20\nid-1`).digest('base64url')
    assert.equal(signingString(String(t), 'GET', '/api/x?a=%20', 'id-1'), `wsds/1\n${t}\nGET\n/api/x?a=%20\nid-1`)
    const req = (signature: string | undefined, target = '/api/x?a=%20') => ({ connectionId: 'id-1', method: 'GET', target, signature })
    assert.equal(checkRequestSignature(req(`t=${t}, s=${sig}`), mac, t + 30_000, 30_000), 'ok')
    assert.equal(checkRequestSignature(req(`t=${t}, s=${sig}`), mac, t - 30_000, 30_000), 'ok')
    assert.equal(checkRequestSignature(req(`t=${t}, s=${sig}`), mac, t + 30_001, 30_000), 'stale')
    assert.equal(checkRequestSignature(req(`t=${t}, s=${sig}`, '/api/x?a= '), mac, t, 30_000), 'bad-mac')
    assert.equal(checkRequestSignature(req(undefined), mac, t, 30_000), 'unsigned')
    assert.equal(checkRequestSignature(req('t=1'), mac, t, 30_000), 'malformed')
  })
  it('computes the same MAC in plain JavaScript as node:crypto', () => {
    const key = Buffer.alloc(32, 9)
    const text = signingString('1', 'DELETE', '/a/%C3%A9?q=é', 'x'.repeat(22))
    assert.equal(jsRequestMac(key)(text), nodeRequestMac(key)(text))
  })
})

describe('lifecycle with binding', () => {
  const random = createRandomPool()
  const keySet = generateKeySet(random, { id: 'ks' })
  const base = { keyRing: createKeyRing([keySet]), random, timeoutMs: 10_000, binder: createNodeBinder() }
  const open = () => openConnection({ connectionId: 'conn-abcdefghijklmnop', origin: 'https://app.test', hostname: 'app.test', now: 0, timeoutMs: 10_000 }).state
  const step = (state: ConnectionState, message: unknown, ctx: Partial<LifecycleContext> = {}) =>
    transition(state, { type: 'text', text: JSON.stringify(message) }, { ...base, now: 1, ...ctx })
  const sent = (actions: Action[]) => actions.flatMap((a) => (a.type === 'send' ? [a.message] : []))
  const answer = (state: ConnectionState) => ({ action: 'answer', token: state.outstanding!.token, result: state.outstanding!.expected })

  it('derives K_req at verification and hands it to the record, the gateway key to the client', async () => {
    const pair = await webcrypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits'])
    const key = Buffer.from(await webcrypto.subtle.exportKey('raw', pair.publicKey)).toString('base64url')
    const hello = step(open(), { action: 'hello', v: 1, bind: { alg: 'ECDH-P256', key } })
    assert.deepEqual(sent(hello.actions).map((m) => m.type), ['connection', 'challenge'])
    const done = step(hello.state, answer(hello.state))
    const persist = done.actions.find((a) => a.type === 'persist-verified')
    const verified = sent(done.actions).find((m) => m.type === 'verified')
    assert.ok(persist?.type === 'persist-verified' && persist.bindKey !== undefined)
    assert.ok(verified?.type === 'verified' && verified.bind !== undefined)
    // The client derives the same key from the gateway's public key (PROTOCOL.md).
    const peer = await webcrypto.subtle.importKey('raw', Buffer.from(verified.bind.key, 'base64url'), { name: 'ECDH', namedCurve: 'P-256' }, false, [])
    const z = await webcrypto.subtle.deriveBits({ name: 'ECDH', public: peer }, pair.privateKey, 256)
    const ikm = await webcrypto.subtle.importKey('raw', z, 'HKDF', false, ['deriveBits'])
    const k = await webcrypto.subtle.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt: Buffer.from('conn-abcdefghijklmnop'), info: Buffer.from('wsds/1 request binding') },
      ikm,
      256,
    )
    assert.equal(Buffer.from(k).toString('base64url'), persist.bindKey)
    // A re-verification keeps the key, so signed requests in flight stay valid.
    const again = transition(done.state, { type: 'rechallenge' }, { ...base, now: 2 })
    const reverified = step(again.state, answer(again.state), { now: 3 })
    const persist2 = reverified.actions.find((a) => a.type === 'persist-verified')
    assert.ok(persist2?.type === 'persist-verified')
    assert.equal(persist2.bindKey, persist.bindKey)
  })
  it('refuses a malformed bind with bad-binding and 4400, before any connection frame', () => {
    const t = step(open(), { action: 'hello', v: 1, bind: { alg: 'ECDH-P256', key: 'x' } })
    assert.deepEqual(sent(t.actions), [{ type: 'rejected', reason: 'bad-binding' }])
    assert.ok(t.actions.some((a) => a.type === 'close' && a.code === 4400))
  })
  it('refuses an unbound hello under required with binding-required and 4400', () => {
    const t = step(open(), { action: 'hello', v: 1 }, { binding: 'required' })
    assert.deepEqual(sent(t.actions), [{ type: 'rejected', reason: 'binding-required' }])
    assert.ok(t.actions.some((a) => a.type === 'close' && a.code === 4400))
  })
  it('ignores bind under off: no check, no key, verified without bind', () => {
    const hello = step(open(), { action: 'hello', v: 1, bind: 'garbage' }, { binding: 'off' })
    const done = step(hello.state, answer(hello.state), { binding: 'off' })
    assert.deepEqual(sent(done.actions), [{ type: 'verified', connectionId: 'conn-abcdefghijklmnop' }])
    assert.deepEqual(done.actions.find((a) => a.type === 'persist-verified'), { type: 'persist-verified' })
  })
})

describe('front: binding and quota steps', () => {
  const record = (over: Partial<ConnectionRecord> = {}): ConnectionRecord => ({
    connectionId: 'id-0123456789abcdef',
    status: 'verified',
    origin: 'https://app.test',
    createdAt: 0,
    expiresAt: Date.now() + 60_000,
    ...over,
  })
  const setup = async (over: Partial<ConnectionRecord>, options: { idRateLimit?: number; mode?: 'enforce' | 'monitor'; now?: () => number } = {}) => {
    const store = createMemoryStore()
    await store.put(record(over), { ttlMs: 60_000 })
    const authenticator = createAuthenticator({ store })
    return createFront({ authenticator, requestMac: nodeRequestMac, ...options })
  }
  const key = Buffer.alloc(32, 3)
  const sign = (t: number, method: string, target: string) =>
    `t=${t}, s=${createHmac('sha256', key).update(`wsds/1\n${t}\n${method}\n${target}\nid-0123456789abcdef`).digest('base64url')}`

  it('answers a bound id without a valid signature 401 on the store read and on the cached path', async () => {
    const front = await setup({ bindKey: key.toString('base64url') })
    const id = 'id-0123456789abcdef'
    assert.equal((await front.decide({ connectionId: id, method: 'GET', target: '/a' })).verdict, 'deny:unsigned')
    const ok = await front.decide({ connectionId: id, method: 'GET', target: '/a', signature: sign(Date.now(), 'GET', '/a') })
    assert.equal(ok.status, 200)
    // Cached now: without the request the cache cannot admit a bound id.
    assert.equal(front.decideCached(id), undefined)
    assert.equal(front.decideCached(id, { connectionId: id, method: 'GET', target: '/a', signature: sign(Date.now(), 'GET', '/a') })?.status, 200)
    const stale = front.decideCached(id, { connectionId: id, method: 'GET', target: '/a', signature: sign(Date.now() - 60_000, 'GET', '/a') })
    assert.equal(stale?.status, 401)
    assert.equal(stale?.verdict, 'deny:stale-signature')
    assert.equal(stale?.body, '{"error":"unauthorized"}')
    const wrong = front.decideCached(id, { connectionId: id, method: 'PUT', target: '/a', signature: sign(Date.now(), 'GET', '/a') })
    assert.equal(wrong?.verdict, 'deny:bad-signature')
  })
  it('refuses a record whose key is corrupt', async () => {
    const front = await setup({ bindKey: 'not a key' })
    const d = await front.decide({ connectionId: 'id-0123456789abcdef', method: 'GET', target: '/a', signature: sign(Date.now(), 'GET', '/a') })
    assert.equal(d.status, 401)
  })
  it('labels a binding failure in monitor mode and passes it', async () => {
    const front = await setup({ bindKey: key.toString('base64url') }, { mode: 'monitor' })
    const d = await front.decide({ connectionId: 'id-0123456789abcdef', method: 'GET', target: '/a' })
    assert.equal(d.pass, true)
    assert.equal(d.headers['x-wsds-verdict'], 'deny:unsigned')
  })
  it('spends 2N, then answers 429 with a whole-second Retry-After, and refills at N per second', async () => {
    let t = 1_000_000
    const front = await setup({}, { idRateLimit: 2, now: () => t })
    const id = 'id-0123456789abcdef'
    for (let i = 0; i < 4; i++) assert.equal((await front.decide({ connectionId: id })).status, 200)
    const refused = front.decideCached(id)!
    assert.equal(refused.status, 429)
    assert.equal(refused.body, '{"error":"rate-limited"}')
    assert.equal(refused.headers['retry-after'], '1')
    t += 500
    assert.equal(front.decideCached(id)?.status, 200)
    assert.equal(front.decideCached(id)?.status, 429)
    assert.equal(front.decisions['deny:rate-limited'], 2)
  })
  it('bounds the quota table and parses WSDS_ID_RATE_LIMIT', () => {
    const quota = createQuota({ perSecond: 1, maxIds: 10 })
    for (let i = 0; i < 100; i++) quota.take(`id-${i}`, 0)
    assert.ok(quota.size <= 10)
    assert.equal(quota.take('x', 0), 0)
    assert.equal(quota.take('x', 0), 0)
    assert.equal(quota.take('x', 0), 1000)
    assert.equal(parseIdRateLimit('off'), null)
    assert.equal(parseIdRateLimit('50'), 50)
    assert.throws(() => parseIdRateLimit('0'), { code: 'ERR_CONFIG' })
  })
})
