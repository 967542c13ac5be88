import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  CloseCode,
  REJECT_REASONS,
  closeCodeFor,
  encodeServerMessage,
  parseClientMessage,
  parseServerMessage,
  type ClientMessage,
  type ParseResult,
  type RejectReason,
  type ServerMessage,
} from '../src/core/protocol.ts'

function accepted(result: ParseResult): ClientMessage {
  assert.equal(result.ok, true, `expected the frame to parse, got ${JSON.stringify(result)}`)
  if (!result.ok) throw new Error('unreachable')
  return result.message
}

function refused(text: string): void {
  const result = parseClientMessage(text)
  assert.equal(result.ok, false, `expected ${text} to be refused, got ${JSON.stringify(result)}`)
  if (result.ok) return
  assert.equal(typeof result.error, 'string')
  assert.ok(result.error.length > 0, 'the refusal carries a reason for the error frame')
}

describe('parseClientMessage', () => {
  describe('hello', () => {
    it('parses a hello without keySet and leaves keySet absent', () => {
      const message = accepted(parseClientMessage('{"action":"hello","v":1}'))
      assert.deepEqual(message, { action: 'hello', v: 1 })
      assert.equal('keySet' in message, false)
    })

    it('parses a hello with a keySet', () => {
      assert.deepEqual(accepted(parseClientMessage('{"action":"hello","v":1,"keySet":"ks-abc"}')), {
        action: 'hello',
        v: 1,
        keySet: 'ks-abc',
      })
    })

    it('parses a hello with an integer v other than 1 (the lifecycle, not the parser, rejects the version)', () => {
      assert.deepEqual(accepted(parseClientMessage('{"action":"hello","v":2}')), { action: 'hello', v: 2 })
      assert.deepEqual(accepted(parseClientMessage('{"action":"hello","v":0}')), { action: 'hello', v: 0 })
    })

    it('accepts v written as 1.0, which JSON defines as the integer 1', () => {
      assert.deepEqual(accepted(parseClientMessage('{"action":"hello","v":1.0}')), { action: 'hello', v: 1 })
    })

    it('rejects a hello whose v is missing with bad-message', () => refused('{"action":"hello"}'))
    it('rejects a hello whose v is a string with bad-message', () => refused('{"action":"hello","v":"1"}'))
    it('rejects a hello whose v is a float with bad-message', () => refused('{"action":"hello","v":1.5}'))
    it('rejects a hello whose v is null with bad-message', () => refused('{"action":"hello","v":null}'))
    it('rejects a hello whose v is a boolean with bad-message', () => refused('{"action":"hello","v":true}'))
    it('rejects a hello whose keySet is a number with bad-message', () => refused('{"action":"hello","v":1,"keySet":7}'))
    it('rejects a hello whose keySet is null with bad-message', () => refused('{"action":"hello","v":1,"keySet":null}'))
    it('rejects a hello whose keySet is an array with bad-message', () =>
      refused('{"action":"hello","v":1,"keySet":["ks"]}'))
  })

  describe('answer', () => {
    const results: [string, unknown][] = [
      ['a string', 'abcdef01.0123'],
      ['an empty string', ''],
      ['a number', 42],
      ['zero', 0],
      ['a boolean', false],
      ['null', null],
      ['an array', [1, 'two', null]],
      ['an object', { nested: { deep: [true] } }],
    ]
    for (const [label, result] of results) {
      it(`parses an answer whose result is ${label}, keeping the result as sent`, () => {
        const text = JSON.stringify({ action: 'answer', token: 'tok-1', result })
        assert.deepEqual(accepted(parseClientMessage(text)), { action: 'answer', token: 'tok-1', result })
      })
    }

    it('rejects an answer whose token is a number with bad-message', () => refused('{"action":"answer","token":1,"result":"x"}'))
    it('rejects an answer whose token is missing with bad-message', () => refused('{"action":"answer","result":"x"}'))
    it('rejects an answer whose token is null with bad-message', () => refused('{"action":"answer","token":null,"result":"x"}'))
    it('rejects an answer without a result with bad-message', () => refused('{"action":"answer","token":"t"}'))
  })

  describe('ping', () => {
    it('parses a ping', () => {
      assert.deepEqual(accepted(parseClientMessage('{"action":"ping"}')), { action: 'ping' })
    })
  })

  describe('unknown extra fields', () => {
    it('ignores unknown fields on hello and does not copy them into the message', () => {
      const message = accepted(parseClientMessage('{"action":"hello","v":1,"extra":{"a":1},"pubKey":"xyz"}'))
      assert.deepEqual(message, { action: 'hello', v: 1 })
    })

    it('ignores unknown fields on answer', () => {
      const message = accepted(parseClientMessage('{"action":"answer","token":"t","result":"r","when":123}'))
      assert.deepEqual(message, { action: 'answer', token: 't', result: 'r' })
    })

    it('ignores unknown fields on ping', () => {
      assert.deepEqual(accepted(parseClientMessage('{"action":"ping","seq":9,"type":"pong"}')), { action: 'ping' })
    })

    it('does not let an inherited name such as __proto__ stand in for a field', () => {
      // JSON.parse makes "__proto__" an own property, never the prototype; v must still be there.
      refused('{"action":"hello","__proto__":{"v":1}}')
    })
  })

  describe('garbage', () => {
    const garbage: [string, string][] = [
      ['non-JSON text', 'hello'],
      ['truncated JSON', '{"action":"ping"'],
      ['an empty frame', ''],
      ['a JSON array', '[{"action":"ping"}]'],
      ['JSON null', 'null'],
      ['a JSON number', '42'],
      ['a JSON string', '"ping"'],
      ['JSON true', 'true'],
      ['an object without action', '{"v":1}'],
      ['an unknown action', '{"action":"subscribe"}'],
      ['an action that is not a string', '{"action":1}'],
      ['an action with different case', '{"action":"PING"}'],
      ['an action naming an Object.prototype member', '{"action":"toString"}'],
    ]
    for (const [label, text] of garbage) {
      it(`rejects ${label} with bad-message`, () => refused(text))
    }

    it('never throws, whatever the frame', () => {
      const frames = ['\u0000', '{"action":"answer","token":"t","result":', '{'.repeat(10_000), '\ud800', 'undefined']
      for (const frame of frames) assert.doesNotThrow(() => parseClientMessage(frame))
    })

    it('keeps the reason short even for a long unknown action', () => {
      const result = parseClientMessage(JSON.stringify({ action: 'x'.repeat(10_000) }))
      assert.equal(result.ok, false)
      if (!result.ok) assert.ok(result.error.length < 200, `reason is ${result.error.length} chars`)
    })
  })
})

describe('parseServerMessage', () => {
  const messages: ServerMessage[] = [
    { type: 'connection', connectionId: 'Zm9vYmFyYmF6cXV4cXV1eA' },
    { type: 'challenge', token: 'tok', code: 'function(a){return "x"}', expiresInMs: 9_876 },
    { type: 'verified', connectionId: 'Zm9vYmFyYmF6cXV4cXV1eA' },
    ...REJECT_REASONS.map((reason): ServerMessage => ({ type: 'rejected', reason })),
    { type: 'error', code: 'bad-message', message: 'frame is not valid JSON' },
    { type: 'pong' },
  ]
  for (const message of messages) {
    const label = message.type === 'rejected' ? `rejected ${message.reason}` : message.type
    it(`round-trips a ${label} message through encodeServerMessage`, () => {
      const text = encodeServerMessage(message)
      assert.equal(typeof text, 'string')
      assert.deepEqual(JSON.parse(text), message, 'the frame is the message as JSON')
      assert.deepEqual(parseServerMessage(text), message)
    })
  }

  it('returns null for frames that are not server messages', () => {
    for (const text of ['nope', 'null', '42', '{}', '{"type":"mystery"}', '{"type":"connection"}', '{"type":"challenge","token":"t","code":"c"}', '{"type":"rejected"}']) {
      assert.equal(parseServerMessage(text), null, text)
    }
  })

  it('ignores unknown extra fields on server messages', () => {
    assert.deepEqual(parseServerMessage('{"type":"verified","connectionId":"abc","serverKey":"k"}'), {
      type: 'verified',
      connectionId: 'abc',
    })
  })
})

describe('closeCodeFor', () => {
  // PROTOCOL.md, Sequence 7 and "Close codes".
  const table: Record<RejectReason, number> = {
    'wrong-answer': 4401,
    'bad-token': 4401,
    'bad-domain': 4401,
    'stale-keyset': 4401,
    timeout: 4408,
    'bad-binding': 4400,
    'binding-required': 4400,
    'unsupported-form': 4400,
    'unsupported-version': 4400,
  }

  for (const [reason, code] of Object.entries(table) as [RejectReason, number][]) {
    it(`closes with ${code} after rejected ${reason}`, () => {
      assert.equal(closeCodeFor(reason), code)
    })
  }

  it('covers every reject reason the protocol names', () => {
    assert.deepEqual([...REJECT_REASONS].sort(), Object.keys(table).sort())
  })

  it('exposes the close code table of PROTOCOL.md', () => {
    assert.deepEqual(
      { ...CloseCode },
      { normal: 1000, tooLarge: 1009, badMessages: 4400, unsupportedVersion: 4400, refusedExtension: 4400, failed: 4401, timeout: 4408, rateLimited: 4429 },
    )
  })
})
