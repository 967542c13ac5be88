/**
 * The per-request shortcuts of the protected path give the same answers as the general code
 * they stand in for: the keyed HMAC against node:crypto, the SDK-form signature read against
 * the general header parser, the header-name checks of the reverse proxy, the lazy access
 * request, and auto-pipelined Redis reads.
 */
import assert from 'node:assert/strict'
import { createHmac, randomBytes } from 'node:crypto'
import { createServer, request, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { checkRequestSignature, formatSignatureHeader, parseSignatureHeader, signingString } from '../src/core/binding.ts'
import { keyedRequestMac } from '../src/core/request-mac.ts'
import { nodeCryptoRequestMac, nodeRequestMac } from '../src/crypto/node-binding.ts'
import { accessRequestOf } from '../src/proxy/http-auth.ts'
import { createCorsHook } from '../src/proxy/cors.ts'
import { isWsdsHeaderName } from '../src/proxy/reverse-proxy.ts'
import { REDIS_CLIENT_DEFAULTS, connectRedis, createRedisStore } from '../src/stores/redis.ts'
import { startRedisServer } from './helpers/redis.ts'
import { requireBinary } from './helpers/services.ts'

const redisBin = requireBinary('redis-server')

const randomText = (length: number, maxCode: number) => {
  let s = ''
  for (let i = 0; i < length; i++) s += String.fromCharCode(32 + Math.floor(Math.random() * (maxCode - 32)))
  return s
}

describe('keyed request MAC', () => {
  it('equals node:crypto HMAC-SHA256 for keys of 1 to 64 bytes and messages of 0 to 300 characters, ASCII or not', () => {
    for (let n = 0; n < 2000; n++) {
      const key = randomBytes(1 + (n % 64))
      const text = randomText(n % 301, n % 5 === 0 ? 0x3000 : 0x7f)
      assert.equal(keyedRequestMac(key)(text), createHmac('sha256', key).update(text).digest('base64url'), `key ${key.length} B, text ${JSON.stringify(text)}`)
    }
  })

  it('gives the same MAC on every call with one key, and a different one for another key', () => {
    const key = randomBytes(32)
    const mac = keyedRequestMac(key)
    const text = signingString('1764870000000', 'GET', '/api/greeting?who=Ada', 'AbCdEfGhIjKlMnOpQrStUv')
    const first = mac(text)
    // Buffers are reused between calls: a longer message in between must not leak into the next.
    mac('x'.repeat(1000))
    assert.equal(mac(text), first)
    assert.notEqual(keyedRequestMac(randomBytes(32))(text), first)
  })

  it('is what the Node fronts use, and agrees with the node:crypto reference', () => {
    const key = randomBytes(32)
    const text = signingString('1764870000000', 'POST', '/api/items?x=%20y', 'AbCdEfGhIjKlMnOpQrStUv')
    assert.equal(nodeRequestMac(key)(text), nodeCryptoRequestMac(key)(text))
  })

  it('refuses keys longer than 64 bytes rather than hashing them differently from RFC 2104', () => {
    assert.throws(() => keyedRequestMac(randomBytes(65)), RangeError)
  })
})

describe('WSDS-Signature header parsing', () => {
  const s = 'A'.repeat(21) + '-_' + 'z9'.repeat(10)

  it('reads the SDK form t=<T>, s=<S> as the general parser does', () => {
    for (const t of ['1', '1764870000000', '9'.repeat(16)]) {
      assert.deepEqual(parseSignatureHeader(formatSignatureHeader(t, s)), { t, time: Number(t), s })
    }
  })

  it('still reads other spellings through the general parser: other order, spaces, unknown keys', () => {
    assert.deepEqual(parseSignatureHeader(`s=${s},t=12`), { t: '12', time: 12, s })
    assert.deepEqual(parseSignatureHeader(`t=12 ,  s=${s}`), { t: '12', time: 12, s })
    assert.deepEqual(parseSignatureHeader(`v=1, t=12, s=${s}`), { t: '12', time: 12, s })
  })

  it('refuses near misses of the SDK form', () => {
    for (const bad of [
      `t=, s=${s}`,
      `t=${'1'.repeat(17)}, s=${s}`,
      `t=12a, s=${s}`,
      `t=12, s=${s.slice(1)}`,
      `t=12, s=${s}A`,
      `t=12, s=${s.slice(1)}+`,
      `t=12, s=${s.slice(1)}=`,
      `t=12, t=13, s=${s}`,
      `T=12, s=${s}`,
    ]) {
      assert.equal(parseSignatureHeader(bad), null, bad)
    }
  })

  it('checks a signature made with the keyed MAC, and refuses one MAC character off', () => {
    const mac = keyedRequestMac(randomBytes(32))
    const t = '1764870000000'
    const good = mac(signingString(t, 'GET', '/api/x', 'AbCdEfGhIjKlMnOpQrStUv'))
    const request = (sig: string) => ({ connectionId: 'AbCdEfGhIjKlMnOpQrStUv', method: 'GET', target: '/api/x', signature: formatSignatureHeader(t, sig) })
    assert.equal(checkRequestSignature(request(good), mac, Number(t), 30_000), 'ok')
    const flipped = (good[0] === 'A' ? 'B' : 'A') + good.slice(1)
    assert.equal(checkRequestSignature(request(flipped), mac, Number(t), 30_000), 'bad-mac')
  })
})

describe('reverse proxy header names', () => {
  it('recognises x-wsds-* in any case and with underscores, and nothing shorter or different', () => {
    for (const name of ['x-wsds-verdict', 'X-WSDS-Origin', 'x_wsds_connection_id', 'X_Wsds-rule', 'x-wsds-a']) assert.equal(isWsdsHeaderName(name), true, name)
    for (const name of ['x-wsds-', 'x-wsd-verdict', 'xwsds-verdict', 'x-wsdsverdict', 'y-wsds-verdict', 'x.wsds.verdict', 'connectionid', 'wsds-signature']) assert.equal(isWsdsHeaderName(name), false, name)
  })
})

/** One request through a real node:http server; `inspect` runs on the server's IncomingMessage. */
async function onServer<T>(headers: Record<string, string>, inspect: (req: IncomingMessage) => T, method = 'GET', path = '/api/x?y=1'): Promise<T> {
  let result: T | undefined
  const server = createServer((req, res) => {
    result = inspect(req)
    res.end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      res.resume()
      res.on('end', resolve)
    })
    r.on('error', reject)
    r.end()
  })
  await new Promise((resolve) => server.close(resolve))
  return result as T
}

describe('accessRequestOf', () => {
  it('reads id, method, target and signature, and on demand the service token and client address', async () => {
    const got = await onServer({ connectionId: 'abc12345', 'WSDS-Signature': 't=1, s=x', authorization: 'Bearer tok', 'x-forwarded-for': '203.0.113.9' }, (req) => {
      const r = accessRequestOf(req)
      const trusted = accessRequestOf(req, { trustProxy: true })
      return { plain: [r.connectionId, r.method, r.target, r.signature, r.serviceToken, r.remoteAddress], trusted: trusted.remoteAddress, json: JSON.parse(JSON.stringify(r)) }
    })
    assert.deepEqual(got.plain, ['abc12345', 'GET', '/api/x?y=1', 't=1, s=x', 'tok', '127.0.0.1'])
    assert.equal(got.trusted, '203.0.113.9')
    assert.deepEqual(got.json, { connectionId: 'abc12345', method: 'GET', target: '/api/x?y=1', signature: 't=1, s=x', serviceToken: 'tok', remoteAddress: '127.0.0.1' })
  })

  it('behind forward auth, takes method and target from X-Forwarded-Method and X-Forwarded-Uri', async () => {
    const got = await onServer({ 'x-forwarded-method': 'DELETE', 'x-forwarded-uri': '/api/items/7' }, (req) => {
      const r = accessRequestOf(req, { forwarded: true })
      return [r.method, r.target, r.connectionId, r.serviceToken]
    })
    assert.deepEqual(got, ['DELETE', '/api/items/7', undefined, undefined])
  })
})

describe('CORS hook shortcut', () => {
  it('leaves a request without Origin alone, and still answers a preflight without one', async () => {
    const hook = createCorsHook(['https://app.example'])
    const plain = await onServer({}, (req) => hook(req, { setHeader() {}, writeHead() {}, end() {} } as never))
    assert.equal(plain, false)
    let status = 0
    const preflight = await onServer({ 'access-control-request-method': 'GET' }, (req) =>
      hook(req, { setHeader() {}, writeHead: (s: number) => (status = s), end() {} } as never),
    'OPTIONS')
    assert.equal(preflight, true)
    assert.equal(status, 403)
  })
})

describe('Redis client settings', () => {
  it('auto-pipeline commands, so concurrent record reads share a round trip', () => {
    assert.equal(REDIS_CLIENT_DEFAULTS.enableAutoPipelining, true)
  })

  it('answers 200 concurrent reads of different records each with its own record (real redis-server)', { skip: redisBin.skip }, async () => {
    const redis = await startRedisServer(redisBin.path!)
    const store = createRedisStore({ client: connectRedis(redis.url), prefix: 'pipe:', closeClient: true })
    try {
      assert.equal(await store.ready(5000), true)
      const ids = Array.from({ length: 200 }, (_, i) => `pipelined${String(i).padStart(4, '0')}`)
      const now = Date.now()
      await Promise.all(ids.map((id) => store.put({ connectionId: id, status: 'verified', origin: 'https://app.example', createdAt: now, verifiedAt: now, expiresAt: now + 60_000 }, { ttlMs: 60_000 })))
      // Issued in one tick: ioredis sends them as one pipeline.
      const records = await Promise.all([...ids, 'pipelinedMISSING'].map((id) => store.get(id)))
      assert.deepEqual(records.slice(0, -1).map((r) => r?.connectionId), ids)
      assert.equal(records.at(-1), null)
    } finally {
      await store.close()
      await redis.stop()
    }
  })
})
