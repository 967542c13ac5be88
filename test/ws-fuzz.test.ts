/**
 * A bounded fuzz run against a live gateway, over raw TCP (node:net): random frames
 * (opcodes, reserved bits, unmasked, fragments, binary, oversized), endless fragments, junk
 * and slow upgrades, with honest clients verifying alongside. The gateway must not crash,
 * must close everything it accepted, must stay within a memory bound, and every honest
 * socket must verify. WSDS_FUZZ_SESSIONS sets the size (default 150).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { eventually } from './contracts/protocol-suite.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { upgradeRequest } from './helpers/raw-ws.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

const SESSIONS = Number(process.env.WSDS_FUZZ_SESSIONS ?? 150)
const BATCH = 25

interface RawFrame {
  opcode: number
  fin: boolean
  rsv: number
  masked: boolean
  payload: Uint8Array
}

type Session =
  | { kind: 'frames'; frames: RawFrame[] }
  | { kind: 'endless-fragments'; count: number }
  | { kind: 'oversized'; bytes: number; fragmented: boolean }
  | { kind: 'slow-upgrade'; holdMs: number }
  | { kind: 'junk'; bytes: Uint8Array }

const payload = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.constantFrom('{"action":"hello","v":1}', '{"action":"ping"}', '{"action":"answer","token":"x","result":1}', '{', 'null', '[]').map((s) => new TextEncoder().encode(s)),
  fc.string({ maxLength: 200 }).map((s) => new TextEncoder().encode(s)),
)
const rawFrame: fc.Arbitrary<RawFrame> = fc.record({
  opcode: fc.oneof(fc.constantFrom(0x0, 0x1, 0x1, 0x2, 0x8, 0x9, 0xa), fc.integer({ min: 0, max: 15 })),
  fin: fc.boolean(),
  rsv: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 7 })),
  masked: fc.oneof(fc.constant(true), fc.constant(true), fc.constant(false)),
  payload,
})
const session: fc.Arbitrary<Session> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('frames' as const), frames: fc.array(rawFrame, { minLength: 1, maxLength: 12 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('endless-fragments' as const), count: fc.integer({ min: 100, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('oversized' as const), bytes: fc.integer({ min: 4097, max: 200_000 }), fragmented: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('slow-upgrade' as const), holdMs: fc.integer({ min: 50, max: 600 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('junk' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 2000 }) }) },
)

function encode(f: RawFrame): Buffer {
  const len = f.payload.length
  const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10)
  head[0] = (f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 0x0f)
  const maskBit = f.masked ? 0x80 : 0
  if (len < 126) head[1] = maskBit | len
  else if (len < 65536) {
    head[1] = maskBit | 126
    head.writeUInt16BE(len, 2)
  } else {
    head[1] = maskBit | 127
    head.writeBigUInt64BE(BigInt(len), 2)
  }
  if (!f.masked) return Buffer.concat([head, f.payload])
  const mask = randomBytes(4)
  const body = Buffer.from(f.payload)
  for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ mask[i % 4]!
  return Buffer.concat([head, mask, body])
}

function framesOf(s: Session): Buffer[] {
  switch (s.kind) {
    case 'frames':
      return s.frames.map(encode)
    case 'endless-fragments': {
      const out = [encode({ opcode: 1, fin: false, rsv: 0, masked: true, payload: new Uint8Array(0) })]
      for (let i = 0; i < s.count; i++) out.push(encode({ opcode: 0, fin: false, rsv: 0, masked: true, payload: new Uint8Array(0) }))
      return [Buffer.concat(out)]
    }
    case 'oversized': {
      if (!s.fragmented) return [encode({ opcode: 1, fin: true, rsv: 0, masked: true, payload: new Uint8Array(s.bytes).fill(0x61) })]
      const part = new Uint8Array(1024).fill(0x61)
      const out = [encode({ opcode: 1, fin: false, rsv: 0, masked: true, payload: part })]
      for (let n = 1024; n < s.bytes; n += 1024) out.push(encode({ opcode: 0, fin: false, rsv: 0, masked: true, payload: part }))
      return out
    }
    default:
      return []
  }
}

/** Runs one hostile session; resolves when the TCP connection is gone (or after 3 s, by force). */
function run(port: number, s: Session): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const done = () => {
      clearTimeout(force)
      resolve()
    }
    const force = setTimeout(() => socket.destroy(), 3000)
    socket.on('error', () => {})
    socket.on('close', done)
    socket.on('connect', () => {
      if (s.kind === 'junk') {
        socket.write(s.bytes)
        setTimeout(() => socket.end(), 100)
        return
      }
      if (s.kind === 'slow-upgrade') {
        const text = upgradeRequest('/wsds', TEST_ORIGIN)
        socket.write(text.slice(0, Math.floor(text.length / 2)))
        setTimeout(() => socket.destroy(), s.holdMs)
        return
      }
      socket.write(upgradeRequest('/wsds', TEST_ORIGIN))
      let upgraded = false
      socket.on('data', (chunk: Buffer) => {
        if (upgraded || !chunk.toString('latin1').startsWith('HTTP/1.1 101')) return
        upgraded = true
        for (const f of framesOf(s)) if (!socket.destroyed) socket.write(f)
        // What the gateway did not close itself, the client closes.
        setTimeout(() => socket.end(), 500)
      })
    })
  })
}

describe('WebSocket fuzz run against a live gateway', () => {
  let s: TestServer
  before(async () => {
    s = await startTestServer({ maxPayloadBytes: 4096 })
  })
  after(() => s?.close())

  it(`survives ${SESSIONS} hostile sessions with honest clients verifying alongside, closes them all, and stays within a memory bound`, async (t) => {
    // Warm up first, so the baseline includes what any busy gateway holds.
    for (let i = 0; i < 3; i++) await (await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })).client.close()
    const baseline = process.memoryUsage().rss
    const sessions = fc.sample(session, { numRuns: SESSIONS, seed: Number(process.env.WSDS_FUZZ_SEED ?? 17) })
    const honest: Array<Promise<unknown>> = []
    for (let i = 0; i < sessions.length; i += BATCH) {
      honest.push(
        verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys }).then(async (h) => {
          h.client.send({ action: 'ping' })
          await h.client.expect('pong')
          return h.client.close()
        }),
      )
      await Promise.all(sessions.slice(i, i + BATCH).map((x) => run(s.port, x)))
    }
    const results = await Promise.allSettled(honest)
    const failed = results.filter((r) => r.status === 'rejected')
    assert.equal(failed.length, 0, `honest clients failed: ${failed.map((r) => String((r as PromiseRejectedResult).reason)).join('; ')}`)
    await eventually(() => s.gateway.openConnections === 0, 10_000, 'every accepted socket closed')
    await eventually(async () => ((s.store as { size?: number }).size ?? 0) === 0, 5_000, 'every record deleted')
    const after = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    await after.client.close()
    ;(globalThis as { gc?: () => void }).gc?.()
    const grown = process.memoryUsage().rss - baseline
    t.diagnostic(`RSS ${Math.round(baseline / 1048576)} MB before, ${Math.round((baseline + grown) / 1048576)} MB after ${SESSIONS} sessions`)
    assert.ok(grown < 96 * 1024 * 1024, `RSS grew by ${Math.round(grown / 1024 / 1024)} MB`)
  })
})
