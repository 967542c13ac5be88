/**
 * The challenge deadline under load, checked from the outside (PROTOCOL.md, Sequence 3 and
 * 7): every socket that does not verify in time is rejected `timeout` and closed 4408 close
 * to its deadline, however many were opened at once, and an answer that comes late is
 * refused. Any target of the protocol suite can run it.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { openSocket, solve } from '../helpers/ws-client.ts'
import type { StartTarget, ProtocolTarget } from './protocol-suite.ts'

export interface DeadlineSuiteOptions {
  /** Sockets opened back to back (default 1000). */
  sockets?: number
  /** Challenge deadline of the target, ms (default 2000). */
  challengeTimeoutMs?: number
  /** How late a close may come after the deadline on a loaded machine, ms (default 2000). */
  toleranceMs?: number
}

interface Outcome {
  openedAt: number
  closedAt: number
  code: number
  rejected: string | null
}

/** Opens one socket that says hello and never answers; resolves when it closes. */
function silentSocket(url: string, origin: string, sayHello: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { origin, perMessageDeflate: false })
    let openedAt = 0
    let rejected: string | null = null
    ws.on('open', () => {
      openedAt = performance.now()
      if (sayHello) ws.send('{"action":"hello","v":1}')
    })
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString()) as { type: string; reason?: string }
      if (m.type === 'rejected') rejected = m.reason ?? null
    })
    ws.on('error', () => {})
    ws.on('close', (code) => resolve({ openedAt, closedAt: performance.now(), code, rejected }))
  })
}

export function deadlineSuite(name: string, start: StartTarget, options: DeadlineSuiteOptions = {}): void {
  const count = options.sockets ?? 1000
  const timeoutMs = options.challengeTimeoutMs ?? 2000
  const tolerance = options.toleranceMs ?? 2000
  describe(`challenge deadline under load: ${name}`, () => {
    let t: ProtocolTarget
    before(async () => {
      t = await start({ challengeTimeoutMs: timeoutMs })
    })
    after(async () => {
      await t?.close()
    })

    it(`closes every one of ${count} sockets opened back to back with 4408 within the deadline plus ${tolerance} ms`, async (ctx) => {
      const outcomes = await Promise.all(
        Array.from({ length: count }, (_, i) => silentSocket(t.wsUrl, t.origin, i % 2 === 0)),
      )
      const opened = outcomes.filter((o) => o.openedAt > 0)
      assert.equal(opened.length, count, 'every upgrade was accepted')
      const lifetimes = opened.map((o) => o.closedAt - o.openedAt).sort((a, b) => a - b)
      ctx.diagnostic(`open-to-close ms: min ${Math.round(lifetimes[0]!)}, median ${Math.round(lifetimes[lifetimes.length >> 1]!)}, max ${Math.round(lifetimes.at(-1)!)} (deadline ${timeoutMs})`)
      const late = opened.filter((o) => o.closedAt - o.openedAt > timeoutMs + tolerance)
      assert.equal(late.length, 0, `${late.length} sockets closed later than ${timeoutMs + tolerance} ms after opening`)
      // The deadline counts from the upgrade, which the server sees before the client's
      // 'open'; nothing may be closed well before it either.
      const early = opened.filter((o) => o.closedAt - o.openedAt < timeoutMs - 250)
      assert.equal(early.length, 0, `${early.length} sockets closed before their deadline`)
      if (t.exactCloseCodes) {
        const codes = new Map<number, number>()
        for (const o of opened) codes.set(o.code, (codes.get(o.code) ?? 0) + 1)
        assert.deepEqual([...codes], [[4408, count]])
      }
      const reasons = new Set(opened.map((o) => o.rejected))
      assert.deepEqual([...reasons], ['timeout'])
      if (t.countRecords) {
        const records = t.countRecords
        const started = performance.now()
        while ((await records()) > 0 && performance.now() - started < 5000) await new Promise((r) => setTimeout(r, 20))
        assert.equal(await records(), 0, 'every record was deleted')
      }
    })

    it('refuses a correct answer sent after the deadline with timeout', async () => {
      const client = await openSocket(t.wsUrl, { origin: t.origin })
      client.send({ action: 'hello', v: 1 })
      await client.expect('connection')
      const challenge = await client.expect('challenge')
      const result = await solve(challenge, t.keySet.keys, new URL(t.origin).hostname)
      await new Promise((r) => setTimeout(r, challenge.expiresInMs + 50))
      if (client.ws.readyState === client.ws.OPEN) client.send({ action: 'answer', token: challenge.token, result })
      const frames = []
      for (let m = await client.next(timeoutMs + tolerance); m !== null; m = await client.next(timeoutMs + tolerance)) frames.push(m)
      assert.ok(!frames.some((f) => f.type === 'verified'), `a late answer verified: ${JSON.stringify(frames)}`)
      assert.deepEqual(frames.at(-1), { type: 'rejected', reason: 'timeout' })
      const closed = await client.closed
      if (t.exactCloseCodes) assert.equal(closed.code, 4408)
    })
  })
}
