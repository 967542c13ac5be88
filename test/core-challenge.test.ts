import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkAnswer, createChallenge, NONCE_BYTES, type CodeChallenge } from '../src/core/challenge.ts'
import { generateKeySet, type KeySet } from '../src/core/keyset.ts'
import { createRandomPool, type RandomSource } from '../src/core/random.ts'

/** Runs challenge code the way a page does: `location` is the page's, the argument is `{ keys }`. */
function runInPage(code: string, hostname: string, keys: readonly string[]): unknown {
  const fn = new Function('location', 'return (' + code + ')')({ hostname }) as (arg: { keys: readonly string[] }) => unknown
  return fn({ keys })
}

/** Deterministic bytes (xorshift32), so a challenge can be replayed from its seed. */
function seededRandom(seed: number): RandomSource {
  let x = seed | 0 || 1
  return {
    bytes(n: number): Uint8Array {
      const out = new Uint8Array(n)
      for (let i = 0; i < n; i++) {
        x ^= x << 13
        x ^= x >>> 17
        x ^= x << 5
        out[i] = x & 0xff
      }
      return out
    },
  }
}

const random = createRandomPool()

const FIXED_HOSTS = [
  'localhost',
  'example.com',
  'app.example.com',
  'xn--bcher-kva.example',
  'xn--n3h.xn--ls8h.example',
  '127.0.0.1',
  '10.0.0.255',
  '[::1]',
  '[2001:db8::8a2e:370:7334]',
  'a',
  'a-b.c-d.e',
  `${'x'.repeat(63)}.${'y'.repeat(63)}.${'z'.repeat(63)}.${'w'.repeat(57)}`, // 253 chars, DNS maximum
]

function randomHostname(r: RandomSource): string {
  const b = r.bytes(8)
  const pick = b[0]! % 4
  if (pick === 0) return FIXED_HOSTS[b[1]! % FIXED_HOSTS.length]!
  if (pick === 1) return `${b[1]}.${b[2]}.${b[3]}.${b[4]}`
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-'
  const labels = 1 + (b[1]! % 4)
  const parts: string[] = []
  for (let l = 0; l < labels; l++) {
    const len = 1 + (r.bytes(1)[0]! % (pick === 3 ? 63 : 12))
    let label = ''
    for (const byte of r.bytes(len)) label += alphabet[byte % 26]! // letters only, always a valid label
    parts.push(label)
  }
  const host = parts.join('.')
  return pick === 3 ? `xn--${host}` : host
}

/** A hostname that is guaranteed to differ from `hostname`. */
function otherHostname(hostname: string, r: RandomSource): string {
  const b = r.bytes(2)
  switch (b[0]! % 4) {
    case 0:
      return `www.${hostname}`
    case 1:
      return `${hostname}.evil.example`
    case 2: {
      // Change one character: the closest miss.
      const i = b[1]! % hostname.length
      const c = hostname[i] === 'q' ? 'r' : 'q'
      return hostname.slice(0, i) + c + hostname.slice(i + 1)
    }
    default:
      return hostname === 'localhost' ? '127.0.0.1' : 'localhost'
  }
}

const ROUNDS = 3000

describe('createChallenge and checkAnswer', () => {
  it(`accepts the page's own answer for ${ROUNDS} random challenges, key sets and hostnames`, () => {
    const keySets = Array.from({ length: 40 }, (_, i) => generateKeySet(random, { count: 16 + (i % 5) * 8, keyBytes: 16 + (i % 3) * 8 }))
    for (let round = 0; round < ROUNDS; round++) {
      const keySet = keySets[round % keySets.length]!
      const hostname = round < FIXED_HOSTS.length ? FIXED_HOSTS[round]! : randomHostname(random)
      const { code, expected } = createChallenge({ keySet, hostname, random })
      const result = runInPage(code, hostname, keySet.keys)
      assert.equal(result, expected, `round ${round}: host ${hostname}\n${code}`)
      assert.deepEqual(checkAnswer(expected, result), { ok: true })
    }
  })

  it(`never accepts an answer computed on another hostname, and reports bad-domain (${ROUNDS} rounds)`, () => {
    for (let round = 0; round < ROUNDS; round++) {
      const keySet = generateKeySet(random, { count: 16 })
      const hostname = randomHostname(random)
      const wrongHost = otherHostname(hostname, random)
      assert.notEqual(wrongHost, hostname)
      const { code, expected } = createChallenge({ keySet, hostname, random })
      const result = runInPage(code, wrongHost, keySet.keys)
      assert.deepEqual(checkAnswer(expected, result), { ok: false, reason: 'bad-domain' }, `round ${round}: ${hostname} vs ${wrongHost}`)
    }
  })

  it(`never accepts an answer computed on a hostname of another length, and reports bad-domain (${ROUNDS} rounds)`, () => {
    for (let round = 0; round < ROUNDS; round++) {
      const keySet = generateKeySet(random, { count: 16 })
      const hostname = randomHostname(random)
      const wrongHost = round % 2 === 0 ? `www.${hostname}` : `${hostname}.evil.example`
      const { code, expected } = createChallenge({ keySet, hostname, random })
      const result = runInPage(code, wrongHost, keySet.keys)
      assert.deepEqual(checkAnswer(expected, result), { ok: false, reason: 'bad-domain' }, `round ${round}: ${hostname} vs ${wrongHost}`)
    }
  })

  it(`reports bad-domain for an answer computed on a hostname of the same length (${ROUNDS} rounds)`, () => {
    // The domain tag must depend on every character of the hostname, not only on its length.
    const failures: string[] = []
    for (let round = 0; round < ROUNDS; round++) {
      const keySet = generateKeySet(random, { count: 16 })
      const hostname = 'app-host.example.com'
      const wrongHost = 'app-hoqt.example.com'
      const { code, expected } = createChallenge({ keySet, hostname, random })
      const check = checkAnswer(expected, runInPage(code, wrongHost, keySet.keys))
      if (check.ok || check.reason !== 'bad-domain') failures.push(`round ${round}: ${JSON.stringify(check)}`)
    }
    assert.deepEqual(failures, [], `${failures.length} of ${ROUNDS} same-length hostnames were not told apart by the tag`)
  })

  it('never accepts an answer computed on a hostname that differs in one character (20000 rounds)', () => {
    // Enough rounds that a rare acceptance (a challenge whose hostname round ignores the
    // characters) shows up reliably.
    const keySet = generateKeySet(random, { count: 16 })
    const accepted: string[] = []
    for (let round = 0; round < 20_000; round++) {
      const { code, expected } = createChallenge({ keySet, hostname: 'example.com', random })
      if (checkAnswer(expected, runInPage(code, 'evil-xx.com', keySet.keys)).ok) accepted.push(code)
    }
    assert.equal(accepted.length, 0, `${accepted.length} answers from evil-xx.com accepted for example.com, e.g.\n${accepted[0]}`)
  })

  it('rejects a page on evil-xx.com for the challenge drawn from seed 1026 (regression: hostname characters cancel out)', () => {
    // With this seed the hostname round is `A^=t;A=Math.imul(A^t,k)` and nothing else that
    // reads t, so t cancels; the tag round cancels the same way (two more `^=t`).
    const keySet = generateKeySet(seededRandom(99), { id: 'ks-fixed' })
    const { code, expected } = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(1026) })
    assert.equal(runInPage(code, 'example.com', keySet.keys), expected)
    assert.deepEqual(checkAnswer(expected, runInPage(code, 'evil-xx.com', keySet.keys)), { ok: false, reason: 'bad-domain' })
  })

  it(`never accepts an answer computed with one drawn key changed in one character (${ROUNDS} rounds)`, () => {
    // "Randomized shared secrets": every drawn key's content must count, not only its length.
    const failures: number[] = []
    for (let round = 0; round < ROUNDS; round++) {
      const keySet = generateKeySet(random, { count: 16 })
      const { code, expected } = createChallenge({ keySet, hostname: 'example.com', random })
      const used = [...new Set([...code.matchAll(/\[(\d+)\]/g)].map((m) => Number(m[1])))]
      const index = used[round % used.length]!
      const keys = [...keySet.keys]
      const key = keys[index]!
      keys[index] = key.slice(0, 5) + (key[5] === 'A' ? 'B' : 'A') + key.slice(6)
      if (checkAnswer(expected, runInPage(code, 'example.com', keys)).ok) failures.push(round)
    }
    assert.deepEqual(failures, [], `${failures.length} of ${ROUNDS} answers accepted with a changed key`)
  })

  it(`never accepts an answer computed with another key set of the same length, and reports wrong-answer (${ROUNDS} rounds)`, () => {
    for (let round = 0; round < ROUNDS; round++) {
      const count = 16 + (round % 17)
      const keySet = generateKeySet(random, { count })
      const otherSet = generateKeySet(random, { count })
      const hostname = randomHostname(random)
      const { code, expected } = createChallenge({ keySet, hostname, random })
      const result = runInPage(code, hostname, otherSet.keys)
      assert.deepEqual(checkAnswer(expected, result), { ok: false, reason: 'wrong-answer' }, `round ${round}`)
    }
  })

  it(`never accepts an answer with one key changed by a single character (${ROUNDS / 3} rounds)`, () => {
    for (let round = 0; round < ROUNDS / 3; round++) {
      const keySet = generateKeySet(random, { count: 16 })
      const hostname = randomHostname(random)
      const { code, expected } = createChallenge({ keySet, hostname, random })
      // Change every key, each in one character, so whichever keys the challenge drew differ.
      const keys = keySet.keys.map((k) => (k[0] === 'A' ? 'B' : 'A') + k.slice(1))
      const result = runInPage(code, hostname, keys)
      assert.deepEqual(checkAnswer(expected, result), { ok: false, reason: 'wrong-answer' }, `round ${round}`)
    }
  })

  it(`never accepts the answer of a different challenge on the same host and key set (${ROUNDS} rounds)`, () => {
    const keySet = generateKeySet(random)
    for (let round = 0; round < ROUNDS; round++) {
      const hostname = randomHostname(random)
      const first = createChallenge({ keySet, hostname, random })
      const second = createChallenge({ keySet, hostname, random })
      const firstAnswer = runInPage(first.code, hostname, keySet.keys)
      assert.equal(checkAnswer(second.expected, firstAnswer).ok, false, `round ${round}`)
      assert.equal(checkAnswer(first.expected, runInPage(second.code, hostname, keySet.keys)).ok, false, `round ${round}`)
    }
  })

  it('reports wrong-answer for results that are not strings', () => {
    const keySet = generateKeySet(random)
    const { code, expected } = createChallenge({ keySet, hostname: 'example.com', random })
    const right = runInPage(code, 'example.com', keySet.keys) as string
    for (const result of [null, undefined, 0, 123456789, true, [right], { result: right }, Number.NaN]) {
      assert.deepEqual(checkAnswer(expected, result), { ok: false, reason: 'wrong-answer' }, String(result))
    }
  })

  it('reports wrong-answer for strings of the wrong length, even when they start with the right tag', () => {
    const keySet = generateKeySet(random)
    const { code, expected } = createChallenge({ keySet, hostname: 'example.com', random })
    const right = runInPage(code, 'example.com', keySet.keys) as string
    for (const result of ['', right.slice(0, -1), right + '0', right.slice(0, 8), right + right, ' ' + right]) {
      assert.deepEqual(checkAnswer(expected, result), { ok: false, reason: 'wrong-answer' }, JSON.stringify(result))
    }
  })

  it('reports wrong-answer when only the digest differs and bad-domain when the tag differs', () => {
    const keySet = generateKeySet(random)
    const { expected } = createChallenge({ keySet, hostname: 'example.com', random })
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === '0' ? '1' : '0') + s.slice(i + 1)
    assert.deepEqual(checkAnswer(expected, flip(expected, expected.length - 1)), { ok: false, reason: 'wrong-answer' })
    assert.deepEqual(checkAnswer(expected, flip(expected, 0)), { ok: false, reason: 'bad-domain' })
    // Only the tag is compared for the reason: a wrong tag is bad-domain whatever the digest.
    assert.deepEqual(checkAnswer(expected, flip(flip(expected, 0), expected.length - 1)), { ok: false, reason: 'bad-domain' })
  })

  it('produces an expected answer of the form <8 hex tag>.<32 hex digest>', () => {
    const keySet = generateKeySet(random)
    for (let i = 0; i < 200; i++) {
      const { expected } = createChallenge({ keySet, hostname: randomHostname(random), random })
      assert.match(expected, /^[0-9a-f]{8}\.[0-9a-f]{32}$/)
    }
  })
})

describe('challenge source', () => {
  const keySet = generateKeySet(random)
  const sample: CodeChallenge[] = Array.from({ length: 1000 }, () => createChallenge({ keySet, hostname: 'example.com', random }))

  it('differs between any two of 1000 challenges', () => {
    assert.equal(new Set(sample.map((c) => c.code)).size, sample.length)
    assert.equal(new Set(sample.map((c) => c.expected)).size, sample.length)
  })

  it('has many distinct shapes once identifiers, numbers and the nonce are blanked out (> 900 of 1000)', () => {
    const shape = (code: string) =>
      code
        .replace(/"[0-9a-f]{32}"/g, 'NONCE')
        .replace(/\b(?!Math\b|imul\b|var\b|for\b|return\b|function\b|String\b|location\b|hostname\b|length\b|charCodeAt\b|toString\b|slice\b)[A-Za-z_$][A-Za-z0-9_$]*\b/g, 'ID')
        .replace(/-?\b\d+\b/g, 'N')
    const shapes = new Set(sample.map((c) => shape(c.code)))
    assert.ok(shapes.size > 900, `only ${shapes.size} distinct shapes`)
  })

  it('uses fresh identifiers: the same identifier set rarely repeats', () => {
    const idents = (code: string) => [...new Set(code.match(/\b[A-Za-z][a-z]\b/g) ?? [])].sort().join(',')
    const distinct = new Set(sample.map((c) => idents(c.code)))
    assert.ok(distinct.size > 900, `only ${distinct.size} distinct identifier sets`)
  })

  it('never mentions crypto, subtle, eval or document', () => {
    for (const { code } of sample) {
      assert.doesNotMatch(code, /crypto|subtle|eval|document|Function|import|fetch/)
    }
  })

  it('is a single function expression taking one argument', () => {
    for (const { code } of sample) {
      assert.ok(code.startsWith('function('), code.slice(0, 40))
      assert.ok(code.endsWith('}'))
      // It compiles as one expression on its own.
      const fn = new Function('location', 'return (' + code + ')')({ hostname: 'example.com' }) as unknown
      assert.equal(typeof fn, 'function')
      assert.equal((fn as (...args: unknown[]) => unknown).length, 1)
    }
  })

  it('embeds a 128-bit nonce as 32 hex digits, different in every challenge', () => {
    const nonces = sample.map((c) => {
      const m = c.code.match(/'([0-9a-f]{32})'/)
      assert.ok(m, 'nonce literal present')
      return m[1]!
    })
    assert.equal(NONCE_BYTES * 2, 32)
    assert.equal(new Set(nonces).size, nonces.length)
  })

  it('never contains the secret keys themselves, only indexes into keys', () => {
    for (const { code } of sample.slice(0, 200)) {
      for (const key of keySet.keys) assert.ok(!code.includes(key))
    }
  })

  it('does not embed the hostname: it reads location.hostname', () => {
    const { code } = createChallenge({ keySet, hostname: 'unique-host-name.example', random })
    assert.ok(!code.includes('unique-host-name'))
    assert.match(code, /location\.hostname/)
  })
})

describe('randomness', () => {
  const keySet = generateKeySet(seededRandom(99), { id: 'ks-fixed' })

  it('makes createChallenge fully determined by its random source: same seed, same code and expected', () => {
    for (const seed of [1, 2, 12345, 0x7fffffff, -5]) {
      const a = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(seed) })
      const b = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(seed) })
      assert.deepEqual(a, b)
      assert.equal(runInPage(a.code, 'example.com', keySet.keys), a.expected)
    }
  })

  it('gives different challenges for different seeds', () => {
    const a = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(1) })
    const b = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(2) })
    assert.notEqual(a.code, b.code)
    assert.notEqual(a.expected, b.expected)
  })

  it('draws everything from the random source it is given, not from elsewhere', () => {
    let drawn = 0
    const counting: RandomSource = {
      bytes(n) {
        drawn += n
        return seededRandom(drawn + 7).bytes(n)
      },
    }
    createChallenge({ keySet, hostname: 'example.com', random: counting })
    assert.ok(drawn >= NONCE_BYTES, `drew ${drawn} bytes`)
  })

  it('is not fooled by a constant random source: the answer is still the page computation', () => {
    const zeros: RandomSource = { bytes: (n) => new Uint8Array(n) }
    const ones: RandomSource = { bytes: (n) => new Uint8Array(n).fill(0xff) }
    for (const r of [zeros, ones]) {
      const { code, expected } = createChallenge({ keySet, hostname: 'xn--bcher-kva.example', random: r })
      assert.equal(runInPage(code, 'xn--bcher-kva.example', keySet.keys), expected)
    }
  })
})

describe('key sets in challenges', () => {
  it('works with the smallest and large key sets', () => {
    for (const count of [16, 17, 256, 4096]) {
      const keySet: KeySet = generateKeySet(random, { count })
      for (let i = 0; i < 20; i++) {
        const { code, expected } = createChallenge({ keySet, hostname: 'example.com', random })
        assert.equal(runInPage(code, 'example.com', keySet.keys), expected)
      }
    }
  })
})
