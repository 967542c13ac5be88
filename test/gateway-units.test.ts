import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { constantTimeEqual, fromBase64Url, toBase64Url, toHex } from '../src/core/encoding.ts'
import { WsdsError } from '../src/core/errors.ts'
import { createKeyRing } from '../src/core/keyring.ts'
import { generateKeySet, parseKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { createOriginPolicy, normalizeOrigin } from '../src/gateway/origin.ts'
import { createRateLimiter, type RateLimiter } from '../src/gateway/rate-limit.ts'
import { flagsToEnv, loadConfig, loadKeySetFile } from '../src/server/config.ts'

const random = createRandomPool()

function throwsWithCode(fn: () => unknown, code: string, messageIncludes?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof WsdsError, `expected a WsdsError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    if (messageIncludes !== undefined) assert.ok(err.message.includes(messageIncludes), `"${err.message}" does not name ${messageIncludes}`)
    return true
  })
}

class Clock {
  t = 1_700_000_000_000
  now = () => this.t
}

/** The in-process limiter answers synchronously (only shared limiters are async). */
function take(limiter: RateLimiter, key: string): boolean {
  const admitted = limiter.take(key)
  assert.equal(typeof admitted, 'boolean', 'the in-process limiter answers synchronously')
  return admitted as boolean
}

function takeMany(limiter: RateLimiter, key: string, n: number): number {
  let admitted = 0
  for (let i = 0; i < n; i++) if (take(limiter, key)) admitted++
  return admitted
}

describe('createRateLimiter', () => {
  it('admits a burst, then refuses until tokens refill at perSecond', () => {
    const clock = new Clock()
    const limiter = createRateLimiter({ perSecond: 10, burst: 5, now: clock.now })
    assert.equal(takeMany(limiter, 'a', 5), 5)
    assert.equal(take(limiter, 'a'), false)
    clock.t += 99 // 0.99 tokens
    assert.equal(take(limiter, 'a'), false)
    clock.t += 1 // 1 token
    assert.equal(take(limiter, 'a'), true)
    assert.equal(take(limiter, 'a'), false)
    clock.t += 300
    assert.equal(takeMany(limiter, 'a', 10), 3)
  })

  it('never holds more than burst tokens, however long the key was idle', () => {
    const clock = new Clock()
    const limiter = createRateLimiter({ perSecond: 10, burst: 5, now: clock.now })
    take(limiter, 'a')
    clock.t += 3_600_000
    assert.equal(takeMany(limiter, 'a', 100), 5)
  })

  it('keeps keys apart: one address over its limit does not limit another', () => {
    const clock = new Clock()
    const limiter = createRateLimiter({ perSecond: 1, burst: 2, now: clock.now })
    assert.equal(takeMany(limiter, '10.0.0.1', 10), 2)
    assert.equal(takeMany(limiter, '10.0.0.2', 10), 2)
    assert.equal(take(limiter, '10.0.0.1'), false)
  })

  it('defaults burst to 2 x perSecond, so perSecond 50 and more admit 100 parallel handshakes', () => {
    for (const perSecond of [50, 51, 200]) {
      const clock = new Clock()
      const limiter = createRateLimiter({ perSecond, now: clock.now })
      assert.equal(takeMany(limiter, 'nat', 100), 100, `perSecond ${perSecond}`)
      assert.equal(takeMany(limiter, 'nat', 1_000), perSecond * 2 - 100)
    }
  })

  it('sweeps only full buckets when maxKeys is reached: a limited address stays limited', () => {
    const clock = new Clock()
    const limiter = createRateLimiter({ perSecond: 1, burst: 2, maxKeys: 3, now: clock.now })
    assert.equal(takeMany(limiter, 'busy', 2), 2) // busy: 0 tokens
    take(limiter, 'idle-1')
    take(limiter, 'idle-2') // 3 keys tracked
    clock.t += 1_000 // idle-1/2 refill to full; busy gets 1 token
    take(limiter, 'newcomer') // reaches maxKeys: the full idle buckets go, busy stays
    assert.equal(takeMany(limiter, 'busy', 5), 1, 'busy kept its state through the sweep')
  })

  it('bounds memory under a flood of distinct addresses by starting over, erring towards admitting', () => {
    const clock = new Clock()
    const limiter = createRateLimiter({ perSecond: 1, burst: 1, maxKeys: 100, now: clock.now })
    assert.equal(take(limiter, 'victim'), true)
    assert.equal(take(limiter, 'victim'), false)
    for (let i = 0; i < 100; i++) take(limiter, `flood-${i}`) // none of these buckets is full
    assert.equal(take(limiter, 'victim'), true, 'the map was cleared; the address starts afresh')
  })

  it('admits every distinct address in a long flood (no key is refused for lack of room)', () => {
    const clock = new Clock()
    const limiter = createRateLimiter({ perSecond: 1, burst: 1, maxKeys: 10, now: clock.now })
    for (let i = 0; i < 10_000; i++) assert.equal(take(limiter, `addr-${i}`), true)
  })

  it('throws ERR_CONFIG for bad options', () => {
    for (const perSecond of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      throwsWithCode(() => createRateLimiter({ perSecond }), 'ERR_CONFIG')
    }
    for (const burst of [0, 0.5, -3, Number.NaN]) {
      throwsWithCode(() => createRateLimiter({ perSecond: 10, burst }), 'ERR_CONFIG')
    }
  })
})

describe('normalizeOrigin', () => {
  it('omits default ports and lowercases the host', () => {
    assert.equal(normalizeOrigin('http://example.com:80'), 'http://example.com')
    assert.equal(normalizeOrigin('https://example.com:443'), 'https://example.com')
    assert.equal(normalizeOrigin('https://EXAMPLE.com'), 'https://example.com')
    assert.equal(normalizeOrigin('HTTP://example.com'), 'http://example.com')
  })

  it('keeps non-default ports', () => {
    assert.equal(normalizeOrigin('http://localhost:8080'), 'http://localhost:8080')
    assert.equal(normalizeOrigin('https://example.com:80'), 'https://example.com:80')
  })

  it('accepts a trailing slash', () => {
    assert.equal(normalizeOrigin('https://example.com/'), 'https://example.com')
  })

  it('normalizes IDN and IPv6 hosts the way browsers serialize them', () => {
    assert.equal(normalizeOrigin('https://bücher.example'), 'https://xn--bcher-kva.example')
    assert.equal(normalizeOrigin('http://[::1]:8080'), 'http://[::1]:8080')
  })

  it('throws ERR_CONFIG for entries with a path, query, fragment or credentials', () => {
    for (const entry of ['https://example.com/app', 'https://example.com?x=1', 'https://example.com/#top', 'https://user@example.com']) {
      throwsWithCode(() => normalizeOrigin(entry), 'ERR_CONFIG', entry)
    }
  })

  it('throws ERR_CONFIG for an entry with a password but no user name', () => {
    // Credentials are not part of an origin; URL.origin would silently drop them.
    throwsWithCode(() => normalizeOrigin('https://:secret@example.com'), 'ERR_CONFIG')
  })

  it('throws ERR_CONFIG for entries that are not http(s) URLs', () => {
    for (const entry of ['example.com', '', 'ftp://example.com', 'file:///etc/passwd', 'ws://example.com']) {
      throwsWithCode(() => normalizeOrigin(entry), 'ERR_CONFIG')
    }
  })
})

describe('createOriginPolicy', () => {
  const policy = createOriginPolicy(['https://app.example.com', 'http://localhost:8080', 'https://xn--bcher-kva.example:443', 'http://[::1]:3000'])

  it('admits an allowed origin and returns its hostname', () => {
    assert.equal(policy.check('https://app.example.com'), 'app.example.com')
    assert.equal(policy.check('http://localhost:8080'), 'localhost')
    assert.equal(policy.check('https://xn--bcher-kva.example'), 'xn--bcher-kva.example')
    assert.equal(policy.check('http://[::1]:3000'), '[::1]')
  })

  it('returns null for a missing Origin', () => {
    assert.equal(policy.check(undefined), null)
  })

  it('refuses origins that differ in scheme, port, host or form', () => {
    for (const origin of [
      'http://app.example.com',
      'https://app.example.com:8443',
      'http://localhost:8081',
      'https://evil.example.com',
      'https://app.example.com.evil.net',
      'https://APP.example.com',
      'https://app.example.com/',
      'https://app.example.com:443',
      'null',
      '',
    ]) {
      assert.equal(policy.check(origin), null, origin)
    }
  })

  it('lists the normalized origins', () => {
    assert.deepEqual(policy.origins, ['https://app.example.com', 'http://localhost:8080', 'https://xn--bcher-kva.example', 'http://[::1]:3000'])
  })

  it('throws ERR_CONFIG for a bad entry at creation', () => {
    throwsWithCode(() => createOriginPolicy(['https://ok.example', 'https://bad.example/path']), 'ERR_CONFIG')
  })
})

describe('flagsToEnv', () => {
  it('maps --name value and --name=value to the env names', () => {
    assert.deepEqual(flagsToEnv(['--port', '9000', '--host=0.0.0.0', '--rate-limit', 'off']), {
      PORT: '9000',
      HOST: '0.0.0.0',
      WSDS_RATE_LIMIT: 'off',
    })
  })

  it('maps --no-demo to WSDS_DEMO=off and a bare --demo to on', () => {
    assert.deepEqual(flagsToEnv(['--no-demo']), { WSDS_DEMO: 'off' })
    assert.deepEqual(flagsToEnv(['--demo']), { WSDS_DEMO: 'on' })
    assert.deepEqual(flagsToEnv(['--trust-proxy', '--port', '1']), { WSDS_TRUST_PROXY: 'on', PORT: '1' })
  })

  it('throws ERR_CONFIG for an unknown option', () => {
    throwsWithCode(() => flagsToEnv(['--prot', '80']), 'ERR_CONFIG', '--prot')
    throwsWithCode(() => flagsToEnv(['--no-such-thing']), 'ERR_CONFIG')
  })

  it('throws ERR_CONFIG for an option without its value', () => {
    throwsWithCode(() => flagsToEnv(['--port']), 'ERR_CONFIG', '--port')
    throwsWithCode(() => flagsToEnv(['--port', '--host', 'x']), 'ERR_CONFIG', '--port')
  })

  it('throws ERR_CONFIG for an option given as --name= with an empty value, like --name alone', () => {
    // Otherwise `--port=` silently discards PORT from the environment and falls back to 8080.
    throwsWithCode(() => flagsToEnv(['--port=']), 'ERR_CONFIG', '--port')
  })
})

describe('loadConfig', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wsds-config-test-'))
  })
  after(() => {
    rmSync(dir, { recursive: true, force: true })
  })
  const writeJson = (name: string, value: unknown): string => {
    const path = join(dir, name)
    writeFileSync(path, typeof value === 'string' ? value : JSON.stringify(value))
    return path
  }

  it('uses the PROTOCOL.md defaults with an empty environment', () => {
    const config = loadConfig({})
    assert.equal(config.port, 8080)
    assert.equal(config.host, '127.0.0.1')
    assert.equal(config.challengeTimeoutMs, 10_000)
    assert.equal(config.authCacheTtlMs, 300_000)
    assert.equal(config.rateLimit, 200)
    assert.equal(config.leaseMs, 30_000)
    assert.equal(config.maxPayloadBytes, 16 * 1024)
    assert.equal(config.store, 'memory')
    assert.equal(config.upstream, null)
    assert.equal(config.demo, true)
    assert.equal(config.trustProxy, false)
    assert.deepEqual(config.keySets, [])
    assert.deepEqual(config.allowedOrigins, ['http://localhost:8080', 'http://127.0.0.1:8080'])
  })

  it('defaults the allowed origins to the configured port', () => {
    assert.deepEqual(loadConfig({ PORT: '3000' }).allowedOrigins, ['http://localhost:3000', 'http://127.0.0.1:3000'])
  })

  it('treats empty variables as unset', () => {
    assert.equal(loadConfig({ PORT: '', WSDS_RATE_LIMIT: '  ' }).port, 8080)
    assert.equal(loadConfig({ WSDS_RATE_LIMIT: '  ' }).rateLimit, 200)
  })

  it('reads every setting from the environment', () => {
    const config = loadConfig({
      PORT: '9000',
      HOST: '0.0.0.0',
      WSDS_ALLOWED_ORIGINS: 'https://app.example.com, https://admin.example.com:443',
      WSDS_CHALLENGE_TIMEOUT_MS: '5000',
      WSDS_AUTH_CACHE_TTL_MS: '0',
      WSDS_RATE_LIMIT: '50',
      WSDS_LEASE_MS: '60000',
      WSDS_UPSTREAM: 'http://127.0.0.1:4000',
      WSDS_DEMO: 'off',
      WSDS_MAX_PAYLOAD_BYTES: '4096',
      WSDS_TRUST_PROXY: 'yes',
      WSDS_METRICS_TOKEN: 'secret',
      WSDS_LOG_LEVEL: 'warn',
    })
    assert.equal(config.port, 9000)
    assert.equal(config.host, '0.0.0.0')
    assert.deepEqual(config.allowedOrigins, ['https://app.example.com', 'https://admin.example.com'])
    assert.equal(config.challengeTimeoutMs, 5_000)
    assert.equal(config.authCacheTtlMs, 0)
    assert.equal(config.rateLimit, 50)
    assert.equal(config.leaseMs, 60_000)
    assert.equal(config.upstream, 'http://127.0.0.1:4000')
    assert.equal(config.demo, false)
    assert.equal(config.maxPayloadBytes, 4096)
    assert.equal(config.trustProxy, true)
    assert.equal(config.metricsToken, 'secret')
    assert.equal(config.logLevel, 'warn')
  })

  it('lets flags override the environment', () => {
    const config = loadConfig({ PORT: '1111', WSDS_RATE_LIMIT: '10', WSDS_DEMO: 'on' }, ['--port', '2222', '--rate-limit=off', '--no-demo'])
    assert.equal(config.port, 2222)
    assert.equal(config.rateLimit, null)
    assert.equal(config.demo, false)
  })

  it('accepts memory, memory://, redis and dynamodb store URLs', () => {
    assert.equal(loadConfig({ WSDS_STORE: 'memory://' }).store, 'memory')
    assert.equal(loadConfig({ WSDS_STORE: 'redis://127.0.0.1:6379/0' }).store, 'redis://127.0.0.1:6379/0')
    assert.equal(loadConfig({ WSDS_STORE: 'rediss://cache.example:6380' }).store, 'rediss://cache.example:6380')
    assert.equal(loadConfig({ WSDS_STORE: 'dynamodb://wsds?region=eu-west-1' }).store, 'dynamodb://wsds?region=eu-west-1')
    assert.equal(loadConfig({}).storePrefix, 'wsds:')
  })

  it('defaults the cache TTL to 5000 ms with DynamoDB (no deletion feed), still overridable', () => {
    assert.equal(loadConfig({ WSDS_STORE: 'dynamodb://wsds' }).authCacheTtlMs, 5_000)
    assert.equal(loadConfig({ WSDS_STORE: 'redis://127.0.0.1' }).authCacheTtlMs, 300_000)
    assert.equal(loadConfig({ WSDS_STORE: 'dynamodb://wsds', WSDS_AUTH_CACHE_TTL_MS: '0' }).authCacheTtlMs, 0)
  })

  it('switches the rate limit off with WSDS_RATE_LIMIT=off, in any case', () => {
    assert.equal(loadConfig({ WSDS_RATE_LIMIT: 'off' }).rateLimit, null)
    assert.equal(loadConfig({ WSDS_RATE_LIMIT: 'OFF' }).rateLimit, null)
  })

  const badValues: [string, string][] = [
    ['PORT', 'eighty'],
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['WSDS_ALLOWED_ORIGINS', 'https://app.example.com/path'],
    ['WSDS_ALLOWED_ORIGINS', 'not a url'],
    ['WSDS_ALLOWED_ORIGINS', ',,'],
    ['WSDS_CHALLENGE_TIMEOUT_MS', 'soon'],
    ['WSDS_CHALLENGE_TIMEOUT_MS', '99'],
    ['WSDS_CHALLENGE_TIMEOUT_MS', '1e4'],
    ['WSDS_AUTH_CACHE_TTL_MS', '-5'],
    ['WSDS_AUTH_CACHE_TTL_MS', 'forever'],
    ['WSDS_RATE_LIMIT', '0'],
    ['WSDS_RATE_LIMIT', 'unlimited'],
    ['WSDS_STORE', 'postgres'],
    ['WSDS_STORE', 'redis://'],
    ['WSDS_STORE_PREFIX', 'has space'],
    ['WSDS_STORE_PREFIX', 'p'.repeat(65)],
    ['WSDS_LEASE_MS', '0'],
    ['WSDS_LEASE_MS', '30s'],
    ['WSDS_UPSTREAM', 'not a url'],
    ['WSDS_UPSTREAM', 'ftp://files.example.com'],
    ['WSDS_DEMO', 'maybe'],
    ['WSDS_MAX_PAYLOAD_BYTES', '1'],
    ['WSDS_TRUST_PROXY', 'sometimes'],
    ['WSDS_LOG_LEVEL', 'verbose'],
  ]
  for (const [name, value] of badValues) {
    it(`throws ERR_CONFIG naming ${name} for ${name}=${JSON.stringify(value)}`, () => {
      throwsWithCode(() => loadConfig({ [name]: value }), 'ERR_CONFIG', name)
    })
  }

  it('names the variable for a bad flag value too', () => {
    throwsWithCode(() => loadConfig({}, ['--port', 'eighty']), 'ERR_CONFIG', 'PORT')
  })

  it('loads two key set files in order, the first as the current set', () => {
    const a = generateKeySet(random, { id: 'ks-new' })
    const b = generateKeySet(random, { id: 'ks-old' })
    const pa = writeJson('a.json', a)
    const pb = writeJson('b.json', b)
    const config = loadConfig({ WSDS_KEYS_FILE: `${pa}, ${pb}` })
    assert.deepEqual(
      config.keySets.map((k) => k.id),
      ['ks-new', 'ks-old'],
    )
    assert.deepEqual(config.keySets[0]!.keys, a.keys)
    assert.deepEqual(config.keySets[1]!.keys, b.keys)
  })

  it('throws ERR_CONFIG naming WSDS_KEYS_FILE for a missing file', () => {
    throwsWithCode(() => loadConfig({ WSDS_KEYS_FILE: join(dir, 'absent.json') }), 'ERR_CONFIG', 'WSDS_KEYS_FILE')
  })

  it('throws ERR_CONFIG naming WSDS_KEYS_FILE for a file that is not JSON', () => {
    const path = writeJson('broken.json', '{"id": "ks", "keys": [')
    throwsWithCode(() => loadConfig({ WSDS_KEYS_FILE: path }), 'ERR_CONFIG', 'WSDS_KEYS_FILE')
  })

  it('throws ERR_KEYSET naming the file for a key set with too few keys', () => {
    const set = generateKeySet(random)
    const path = writeJson('few.json', { id: set.id, keys: set.keys.slice(0, 15) })
    throwsWithCode(() => loadConfig({ WSDS_KEYS_FILE: path }), 'ERR_KEYSET', path)
    throwsWithCode(() => loadKeySetFile(path), 'ERR_KEYSET', path)
  })

  it('throws ERR_CONFIG naming WSDS_KEYS_FILE when two files carry the same key set id', () => {
    const pa = writeJson('same-a.json', generateKeySet(random, { id: 'ks-same' }))
    const pb = writeJson('same-b.json', generateKeySet(random, { id: 'ks-same' }))
    throwsWithCode(() => loadConfig({ WSDS_KEYS_FILE: `${pa},${pb}` }), 'ERR_CONFIG', 'WSDS_KEYS_FILE')
  })
})

describe('parseKeySet', () => {
  const valid = generateKeySet(random, { id: 'ks-valid' })

  it('accepts a generated key set and returns it frozen', () => {
    const parsed = parseKeySet(JSON.parse(JSON.stringify(valid)))
    assert.deepEqual(parsed, { id: 'ks-valid', keys: valid.keys })
    assert.ok(Object.isFrozen(parsed))
    assert.ok(Object.isFrozen(parsed.keys))
  })

  it('does not share the caller array', () => {
    const input = { id: 'ks-copy', keys: [...valid.keys] }
    const parsed = parseKeySet(input)
    input.keys[0] = 'changed'
    assert.equal(parsed.keys[0], valid.keys[0])
  })

  it('generates 32 keys of 24 bytes by default', () => {
    const set = generateKeySet(random)
    assert.equal(set.keys.length, 32)
    for (const key of set.keys) assert.equal(fromBase64Url(key)?.length, 24)
    assert.match(set.id, /^ks-[A-Za-z0-9_-]{8}$/)
  })

  const bad: [string, unknown][] = [
    ['a non-object', 'ks'],
    ['null', null],
    ['an array', [valid]],
    ['fewer than 16 keys', { id: 'ks', keys: valid.keys.slice(0, 15) }],
    ['keys that is not an array', { id: 'ks', keys: 'abc' }],
    ['a key shorter than 16 bytes', { id: 'ks', keys: [...valid.keys.slice(0, 15), toBase64Url(new Uint8Array(15).fill(7))] }],
    ['a key that is not base64url', { id: 'ks', keys: [...valid.keys.slice(0, 15), 'not+base64/url=padded=='] }],
    ['a key that is not a string', { id: 'ks', keys: [...valid.keys.slice(0, 15), 12345] }],
    ['duplicate keys', { id: 'ks', keys: [...valid.keys.slice(0, 15), valid.keys[0]] }],
    ['a missing id', { keys: valid.keys }],
    ['an empty id', { id: '', keys: valid.keys }],
    ['an id with a slash', { id: 'ks/../../etc', keys: valid.keys }],
    ['an id over 64 characters', { id: 'k'.repeat(65), keys: valid.keys }],
    ['an id that is a number', { id: 7, keys: valid.keys }],
  ]
  for (const [label, value] of bad) {
    it(`rejects ${label} with ERR_KEYSET`, () => {
      throwsWithCode(() => parseKeySet(value, 'test.json'), 'ERR_KEYSET', 'test.json')
    })
  }

  it('accepts exactly 16 keys of exactly 16 bytes', () => {
    const keys = Array.from({ length: 16 }, () => toBase64Url(random.bytes(16)))
    assert.equal(parseKeySet({ id: 'ks-min', keys }).keys.length, 16)
  })

  it('throws ERR_CONFIG from generateKeySet for bad counts and sizes', () => {
    throwsWithCode(() => generateKeySet(random, { count: 15 }), 'ERR_CONFIG')
    throwsWithCode(() => generateKeySet(random, { keyBytes: 8 }), 'ERR_CONFIG')
  })
})

describe('createKeyRing', () => {
  const current = generateKeySet(random, { id: 'ks-current' })
  const older = generateKeySet(random, { id: 'ks-older' })
  const ring = createKeyRing([current, older])

  it('resolves no key set (undefined) to the current set, the first loaded', () => {
    assert.equal(ring.resolve(undefined), current)
    assert.equal(ring.current, current)
  })

  it('resolves each accepted id to its set', () => {
    assert.equal(ring.resolve('ks-current'), current)
    assert.equal(ring.resolve('ks-older'), older)
  })

  it('resolves an unknown id to null', () => {
    assert.equal(ring.resolve('ks-retired'), null)
    assert.equal(ring.resolve(''), null)
  })

  it('does not resolve Object.prototype names', () => {
    assert.equal(ring.resolve('constructor'), null)
    assert.equal(ring.resolve('__proto__'), null)
  })

  it('lists the sets in order', () => {
    assert.deepEqual(
      ring.sets.map((s) => s.id),
      ['ks-current', 'ks-older'],
    )
  })

  it('throws ERR_KEYSET for a duplicate id and for no sets', () => {
    throwsWithCode(() => createKeyRing([current, generateKeySet(random, { id: 'ks-current' })]), 'ERR_KEYSET', 'ks-current')
    throwsWithCode(() => createKeyRing([]), 'ERR_KEYSET')
  })
})

describe('encoding', () => {
  it('round-trips toBase64Url / fromBase64Url for lengths 0..40', () => {
    for (let n = 0; n <= 40; n++) {
      for (const bytes of [random.bytes(n).slice(), new Uint8Array(n), new Uint8Array(n).fill(0xff)]) {
        const text = toBase64Url(bytes)
        assert.match(text, /^[A-Za-z0-9_-]*$/)
        assert.equal(text.length, Math.ceil((n * 4) / 3), 'unpadded length')
        assert.deepEqual(fromBase64Url(text), bytes, `length ${n}`)
      }
    }
  })

  it("agrees with Node's base64url encoding", () => {
    for (let n = 0; n <= 40; n++) {
      const bytes = random.bytes(n).slice()
      assert.equal(toBase64Url(bytes), Buffer.from(bytes).toString('base64url'))
    }
  })

  it('returns null for text that is not unpadded base64url', () => {
    for (const text of ['a', 'abcde', 'ab+c', 'ab/c', 'ab==', 'ab c', 'é']) assert.equal(fromBase64Url(text), null, text)
  })

  it('writes hex in lowercase, two digits a byte', () => {
    assert.equal(toHex(new Uint8Array([0, 1, 15, 16, 255])), '00010f10ff')
  })

  it('compares strings with constantTimeEqual', () => {
    assert.equal(constantTimeEqual('', ''), true)
    assert.equal(constantTimeEqual('abc', 'abc'), true)
    assert.equal(constantTimeEqual('abc', 'abd'), false)
    assert.equal(constantTimeEqual('abc', 'ab'), false)
    assert.equal(constantTimeEqual('ab', 'abc'), false)
    assert.equal(constantTimeEqual('Abc', 'abc'), false)
    assert.equal(constantTimeEqual('\u0100', '\u0000'), false, 'differences above the low byte count')
  })
})
