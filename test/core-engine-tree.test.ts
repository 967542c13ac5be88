/**
 * Engine-check trees drawn with their snippets (src/core/engine-check.ts drawEngineSnippet)
 * against parse5, the reference parser (src/engine/parse5.ts), and the challenge frames
 * written without JSON.stringify (src/core/protocol.ts encodeServerMessage).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkAnswer, createChallenge } from '../src/core/challenge.ts'
import { decodeProgram, runProgram } from '../src/core/program.ts'
import { drawEngineSnippet, drawSnippet } from '../src/core/engine-check.ts'
import { generateKeySet } from '../src/core/keyset.ts'
import { encodeServerMessage, type ServerMessage } from '../src/core/protocol.ts'
import { below, createRandomPool, readUint32 } from '../src/core/random.ts'
import { createEngineChecks, engineTreesAgree, htmlTreeSignature } from '../src/engine/parse5.ts'

const random = createRandomPool()
const draw = { int: (n: number) => below(readUint32(random.bytes(4), 0), n) }

/** A draw that replays `values` (each taken modulo n), for snippets of a chosen shape. */
function scripted(values: number[]) {
  let i = 0
  return { int: (n: number) => values[i++ % values.length]! % n }
}

describe('engine-check trees', () => {
  it('draws every snippet with the tree parse5 builds for it (5,000 draws)', () => {
    const misses: string[] = []
    for (let i = 0; i < 5000; i++) {
      const { html, tree } = drawEngineSnippet(draw)
      if (htmlTreeSignature(html) !== tree) misses.push(html)
    }
    assert.deepEqual(misses.slice(0, 3), [])
  })

  it('leaves a comment that opens the snippet out of body, where the parser puts it', () => {
    // 3 fragments, each the comment (index 7) with a one-letter word.
    const { html, tree } = drawEngineSnippet(scripted([0, 7, 0, 0, 7, 0, 0, 7, 0, 0]))
    assert.equal(html, '<!--a--><!--a--><!--a-->')
    assert.equal(tree, '')
    assert.equal(htmlTreeSignature(html), '')
  })

  it('merges text that meets across fragments into one text node', () => {
    // 3 fragments, each the stray </p> (index 5) between one-letter words.
    const { html, tree } = drawEngineSnippet(scripted([0, 5, 0, 0, 0, 0, 5, 0, 0, 0, 0, 5, 0, 0, 0, 0]))
    assert.equal(html, 'a</p>aa</p>aa</p>a')
    assert.equal(tree, '"a<p>>"aa<p>>"aa<p>>"a')
    assert.equal(htmlTreeSignature(html), tree)
  })

  it('draws the same HTML through drawSnippet for the same draws', () => {
    for (let i = 0; i < 100; i++) {
      const values: number[] = []
      const recorded = drawSnippet({ int: (n) => (values.push(draw.int(n)), values.at(-1)!) })
      assert.equal(drawEngineSnippet(scripted(values)).html, recorded)
    }
  })

  it('uses core trees when they agree with the parser, and the parser on every challenge when not', () => {
    assert.equal(engineTreesAgree(htmlTreeSignature), true)
    assert.deepEqual(createEngineChecks('monitor'), { mode: 'monitor' })
    const disagreeing = (html: string) => htmlTreeSignature(html) + 'x'
    assert.equal(engineTreesAgree(disagreeing), false)
    const checks = createEngineChecks('enforce', disagreeing)
    assert.equal(checks?.mode, 'enforce')
    assert.equal(checks?.treeOf, disagreeing)
    assert.equal(createEngineChecks('off'), undefined)
  })

  it('expects the engine part that a page computes from its own parse of the snippet', () => {
    const keySet = generateKeySet(random, { id: 'k' })
    for (let i = 0; i < 200; i++) {
      const c = createChallenge({ keySet, hostname: 'app.wsds.test', random, form: 'program', engine: { mode: 'enforce' } })
      const decoded = decodeProgram(c.program, keySet.keys.length)!
      const tree = htmlTreeSignature(decoded.program.engine!.html)
      const answer = runProgram(decoded.program, keySet.keys, decoded.nonce, 'app.wsds.test', tree)
      assert.deepEqual(checkAnswer(c.expected, answer, true), { ok: true, engine: 'match' })
    }
  })
})

describe('server frames', () => {
  const keySet = generateKeySet(random, { id: 'k' })

  it('writes every handshake frame exactly as JSON.stringify would', () => {
    const messages: ServerMessage[] = [
      { type: 'connection', connectionId: 'abcDEF012_-xyz' },
      { type: 'connection', connectionId: 'needs "escape" \\ and \n and \u0001' },
      { type: 'verified', connectionId: 'abc' },
      { type: 'verified', connectionId: 'abc', bind: { key: 'k' } },
      { type: 'challenge', token: 't', code: "function(a){return 'x'}", expiresInMs: 9998 },
      { type: 'challenge', token: 't', code: 'lone \ud800 surrogate and \ud83d\ude00', expiresInMs: 0 },
      { type: 'challenge', token: 't', code: 'c', expiresInMs: 5, pow: { alg: 'sha256', bits: 12 } },
      { type: 'challenge', token: 't', form: 'code', code: 'c', expiresInMs: 5 },
      { type: 'challenge', token: 't', form: 'program', program: { v: 1 }, expiresInMs: 5 },
      { type: 'rejected', reason: 'timeout' },
      { type: 'error', code: 'bad-message', message: 'frame is not "JSON"' },
      { type: 'pong' },
    ]
    for (const m of messages) assert.equal(encodeServerMessage(m), JSON.stringify(m))
  })

  it('emits challenge sources with nothing to escape in JSON, with and without engine checks', () => {
    for (let i = 0; i < 500; i++) {
      const engine = i % 2 === 0 ? { mode: 'monitor' as const } : undefined
      const { code } = createChallenge({ keySet, hostname: 'app.wsds.test', random, engine })
      assert.doesNotMatch(code, /["\\\u0000-\u001f]/)
      const frame = encodeServerMessage({ type: 'challenge', token: 'tok', code, expiresInMs: 10 })
      assert.equal(frame, JSON.stringify({ type: 'challenge', token: 'tok', code, expiresInMs: 10 }))
    }
  })
})
