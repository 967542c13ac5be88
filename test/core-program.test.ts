import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { checkAnswer, createChallenge } from '../src/core/challenge.ts'
import type { EngineChecks } from '../src/core/engine-check.ts'
import { generateKeySet } from '../src/core/keyset.ts'
import { decodeProgram, runProgram, type WireProgram } from '../src/core/program.ts'
import type { RandomSource } from '../src/core/random.ts'
import { createEngineChecks, htmlTreeSignature } from '../src/engine/parse5.ts'
import { NodeDOMParser } from './helpers/html-dom.ts'

/** Deterministic bytes (xorshift32), so fast-check can shrink and replay a challenge. */
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

const keySet = generateKeySet(seededRandom(7))
const monitor = createEngineChecks('monitor')!
const hostnames = fc.stringMatching(/^[a-z0-9-]{1,20}(\.[a-z0-9-]{1,12}){0,3}$/)

/** What the SDK does with a program challenge: JSON over the wire, decode, interpret. */
function sdkAnswer(wire: WireProgram, keys: readonly string[], hostname: string, dom = true): string {
  const decoded = decodeProgram(JSON.parse(JSON.stringify(wire)), keys.length)
  assert.ok(decoded, 'the SDK decoder accepts what the gateway sends')
  const engine = decoded.program.engine
  return runProgram(decoded.program, keys, decoded.nonce, hostname, engine && dom ? htmlTreeSignature(engine.html) : null)
}

function codeAnswer(code: string, keys: readonly string[], hostname: string, dom = true): unknown {
  const fn = new Function('location', 'DOMParser', 'return (' + code + ')')({ hostname }, dom ? NodeDOMParser : undefined) as (a: { keys: readonly string[] }) => unknown
  return fn({ keys })
}

describe('program form', () => {
  it('the SDK interpreter and the gateway agree bit for bit on 3000 random programs, with and without engine checks', () => {
    fc.assert(
      fc.property(fc.integer(), hostnames, fc.boolean(), (seed, hostname, withEngine) => {
        const engine: EngineChecks | undefined = withEngine ? monitor : undefined
        const c = createChallenge({ keySet, hostname, random: seededRandom(seed), form: 'program', engine })
        const answer = sdkAnswer(c.program, keySet.keys, hostname)
        assert.equal(answer, c.expected)
        assert.deepEqual(checkAnswer(c.expected, answer, true), withEngine ? { ok: true, engine: 'match' } : { ok: true })
      }),
      { numRuns: 3000 },
    )
  })

  it('the code form with the same draws gives the same kind of answer: a code page and a program page are judged alike', () => {
    fc.assert(
      fc.property(fc.integer(), hostnames, (seed, hostname) => {
        const c = createChallenge({ keySet, hostname, random: seededRandom(seed), engine: monitor })
        assert.equal(codeAnswer(c.code, keySet.keys, hostname), c.expected)
      }),
      { numRuns: 1000 },
    )
  })

  it('never passes with a wrong key, hostname or nonce (2000 rounds each)', () => {
    fc.assert(
      fc.property(fc.integer(), hostnames, hostnames, fc.integer({ min: 0, max: 63 }), (seed, hostname, other, keyIndex) => {
        const c = createChallenge({ keySet, hostname, random: seededRandom(seed), form: 'program' })
        const decoded = decodeProgram(c.program, keySet.keys.length)!
        if (other !== hostname) {
          const r = runProgram(decoded.program, keySet.keys, decoded.nonce, other, null)
          assert.equal(checkAnswer(c.expected, r).ok, false)
        }
        const used = decoded.program.steps.some((s) => 'key' in s.input && s.input.key === keyIndex % keySet.keys.length)
        if (used) {
          const keys = [...keySet.keys]
          const i = keyIndex % keys.length
          keys[i] = keys[i]!.slice(0, -1) + (keys[i]!.endsWith('A') ? 'B' : 'A')
          assert.equal(checkAnswer(c.expected, runProgram(decoded.program, keys, decoded.nonce, hostname, null)).ok, false)
        }
        const nonce = decoded.nonce.slice(0, -1) + (decoded.nonce.endsWith('0') ? '1' : '0')
        assert.equal(checkAnswer(c.expected, runProgram(decoded.program, keySet.keys, nonce, hostname, null)).ok, false)
      }),
      { numRuns: 2000 },
    )
  })

  it('every one of 5000 programs differs, and so does every nonce and expected answer', () => {
    const programs = new Set<string>()
    const expected = new Set<string>()
    const random = seededRandom(99)
    for (let i = 0; i < 5000; i++) {
      const c = createChallenge({ keySet, hostname: 'example.com', random, form: 'program', engine: monitor })
      const { nonce, ...shape } = c.program
      programs.add(JSON.stringify(shape))
      expected.add(c.expected)
    }
    assert.equal(programs.size, 5000)
    assert.equal(expected.size, 5000)
  })

  it('never contains the keys: steps name keys by index only', () => {
    const c = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(3), form: 'program', engine: monitor })
    const text = JSON.stringify(c.program)
    for (const key of keySet.keys) assert.ok(!text.includes(key))
  })

  it('the decoder rejects any program outside the format (unknown op kinds, lanes, sizes, key indices, versions)', () => {
    const c = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(5), form: 'program', engine: monitor })
    const good = c.program
    const bad: unknown[] = [
      null,
      [],
      { ...good, v: 2 },
      { ...good, nonce: 'XYZ' },
      { ...good, seed: [1, 2, 3] },
      { ...good, seed: [1, 2, 3, 2 ** 32] },
      { ...good, steps: [] },
      { ...good, steps: Array.from({ length: 17 }, () => good.steps[0]) },
      { ...good, steps: [[keySet.keys.length, good.steps[0]![1]]] },
      { ...good, steps: [[-3, good.steps[0]![1]]] },
      { ...good, steps: [[0, [[8, 0, 1, 1, 1]]]] },
      { ...good, steps: [[0, [[0, 4, 1, 1, 1]]]] },
      { ...good, steps: [[0, [[4, 1, 1, 1, 1]]]] },
      { ...good, steps: [[0, [[3, 1, 2, 0, 1]]]] },
      { ...good, steps: [[0, [[0, 1, 2, 1, 1.5]]]] },
      { ...good, steps: [[0, Array.from({ length: 17 }, () => [0, 0, 1, 1, 1])]] },
      { ...good, final: Array.from({ length: 65 }, () => [7, 0, 0, 0, 1]) },
      { ...good, tag: { ...good.tag, ops: [[0, 2, 0, 1, 1]] } },
      { ...good, engine: { ...good.engine!, html: 'x'.repeat(2049) } },
      { ...good, engine: { ...good.engine!, html: 5 } },
    ]
    for (const b of bad) assert.equal(decodeProgram(b, keySet.keys.length), null, JSON.stringify(b).slice(0, 120))
    assert.ok(decodeProgram(good, keySet.keys.length))
  })

  it('the decoder never throws on arbitrary JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        decodeProgram(v, 8)
      }),
      { numRuns: 2000 },
    )
  })
})

describe('engine checks', () => {
  it('a solver with the right keys and a fake location but no DOM fails every challenge with an engine check, in enforce (1000 per form)', () => {
    const random = seededRandom(11)
    for (let i = 0; i < 1000; i++) {
      const c = createChallenge({ keySet, hostname: 'example.com', random, engine: monitor })
      const answer = codeAnswer(c.code, keySet.keys, 'example.com', false)
      assert.deepEqual(checkAnswer(c.expected, answer, true), { ok: false, reason: 'wrong-answer', engine: 'missing' })
      assert.deepEqual(checkAnswer(c.expected, answer, false), { ok: true, engine: 'missing' })
      const p = createChallenge({ keySet, hostname: 'example.com', random, form: 'program', engine: monitor })
      const pa = sdkAnswer(p.program, keySet.keys, 'example.com', false)
      assert.equal(checkAnswer(p.expected, pa, true).ok, false)
    }
  })

  it('a wrong tree is a mismatch told apart from a wrong key or domain: monitor admits and labels it, enforce rejects', () => {
    const c = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(12), form: 'program', engine: monitor })
    const decoded = decodeProgram(c.program, keySet.keys.length)!
    const answer = runProgram(decoded.program, keySet.keys, decoded.nonce, 'example.com', 'a different tree')
    assert.deepEqual(checkAnswer(c.expected, answer, false), { ok: true, engine: 'mismatch' })
    assert.deepEqual(checkAnswer(c.expected, answer, true), { ok: false, reason: 'wrong-answer', engine: 'mismatch' })
  })

  it('parse5 builds the trees the HTML standard fixes for each drawn construct', () => {
    assert.equal(htmlTreeSignature('<b>1<i>2</b>3</i>'), '<b>"1<i>"2>><i>"3>')
    assert.equal(htmlTreeSignature('<b>1<p>2</b>3</p>'), '<b>"1><p><b>"2>"3>')
    assert.equal(htmlTreeSignature('<table><tr><td>a<td>b</table>'), '<table><tbody><tr><td>"a><td>"b>>>>')
    assert.equal(htmlTreeSignature('<p>a<p>b<div>c</div>'), '<p>"a><p>"b><div>"c>')
    assert.equal(htmlTreeSignature('a</p>b'), '"a<p>>"b')
    assert.equal(htmlTreeSignature('<span>&amp;&#65;&#x42;&nbsp;</span><!--c-->'), '<span>"&AB\u00a0>!c')
  })

  it('off draws no engine check: answers keep the two-part shape', () => {
    assert.equal(createEngineChecks('off'), undefined)
    const c = createChallenge({ keySet, hostname: 'example.com', random: seededRandom(13), form: 'program' })
    assert.equal(c.program.engine, undefined)
    assert.match(c.expected, /^[0-9a-f]{8}\.[0-9a-f]{32}$/)
  })
})
