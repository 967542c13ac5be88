/**
 * Step-up settings (docs/step-up.md, "Settings"), the operator request format shared by the
 * endpoint, the CLI and the broadcast, the periodic timer, and the memory store's broadcast.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { matchesTarget, parseRechallengeRequest, rechallengeBody } from '../src/core/operations.ts'
import { createRechallengeTimer } from '../src/gateway/rechallenge-timer.ts'
import { loadConfig } from '../src/server/config.ts'
import { createMemoryStore } from '../src/stores/memory.ts'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('step-up settings', () => {
  it('are all off by default', () => {
    const c = loadConfig({})
    assert.equal(c.rechallengeMs, null)
    assert.equal(c.powBits, 0)
    assert.equal(c.powMaxBits, 0)
    assert.equal(c.adminToken, null)
  })

  it('reads each from its variable and its flag', () => {
    const c = loadConfig({ WSDS_RECHALLENGE_MS: '2000', WSDS_POW_BITS: '12' }, ['--pow-max-bits', '18', '--rechallenge-ms=5000'])
    assert.equal(c.rechallengeMs, 5000)
    assert.equal(c.powBits, 12)
    assert.equal(c.powMaxBits, 18)
    assert.equal(loadConfig({ WSDS_POW_BITS: '12' }).powMaxBits, 20, 'escalation cap defaults to 20 once work is on')
    assert.equal(loadConfig({ WSDS_POW_BITS: '22' }).powMaxBits, 22)
    assert.equal(loadConfig({ WSDS_RECHALLENGE_MS: 'off' }).rechallengeMs, null)
  })

  it('refuses bad values, naming the setting', () => {
    assert.throws(() => loadConfig({ WSDS_RECHALLENGE_MS: '500' }), { code: 'ERR_CONFIG', message: /WSDS_RECHALLENGE_MS/ })
    assert.throws(() => loadConfig({ WSDS_RECHALLENGE_MS: 'soon' }), { code: 'ERR_CONFIG', message: /WSDS_RECHALLENGE_MS/ })
    assert.throws(() => loadConfig({ WSDS_POW_BITS: '33' }), { code: 'ERR_CONFIG', message: /WSDS_POW_BITS/ })
    assert.throws(() => loadConfig({ WSDS_POW_BITS: '16', WSDS_POW_MAX_BITS: '12' }), { code: 'ERR_CONFIG', message: /WSDS_POW_MAX_BITS.*at least WSDS_POW_BITS/ })
  })

  it('refuses a short admin token without printing it', () => {
    assert.throws(() => loadConfig({ WSDS_ADMIN_TOKEN: 'short-secret' }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_CONFIG')
      assert.match(err.message, /WSDS_ADMIN_TOKEN/)
      assert.doesNotMatch(err.message, /short-secret/)
      return true
    })
    assert.equal(loadConfig({ WSDS_ADMIN_TOKEN: 'a-long-enough-token-123' }).adminToken, 'a-long-enough-token-123')
  })
})

describe('operator re-challenge requests', () => {
  it('take exactly one target and an optional difficulty', () => {
    assert.deepEqual(parseRechallengeRequest({ connectionId: 'abc' }), { ok: true, request: { target: { connectionId: 'abc' } } })
    assert.deepEqual(parseRechallengeRequest({ all: true, powBits: 16 }), { ok: true, request: { target: { all: true }, powBits: 16 } })
    assert.deepEqual(parseRechallengeRequest({ address: '::FFFF:10.0.0.1' }), { ok: true, request: { target: { address: '10.0.0.1' } } })
    assert.deepEqual(parseRechallengeRequest({ origin: 'HTTPS://App.Example.com' }), { ok: true, request: { target: { origin: 'https://app.example.com' } } })
    for (const bad of [null, [], {}, { all: false }, { all: true, address: '1.2.3.4' }, { address: 'host.example' }, { origin: 'https://a/b' }, { connectionId: '' }, { all: true, powBits: 0 }, { all: true, powBits: 33 }, { all: true, powBits: '8' }]) {
      assert.equal(parseRechallengeRequest(bad).ok, false, JSON.stringify(bad))
    }
  })

  it('survive the trip through the broadcast shape unchanged', () => {
    for (const body of [{ connectionId: 'x' }, { address: '10.0.0.1', powBits: 9 }, { origin: 'http://a.test' }, { all: true }]) {
      const parsed = parseRechallengeRequest(body)
      assert.ok(parsed.ok)
      assert.deepEqual(parseRechallengeRequest(JSON.parse(JSON.stringify(rechallengeBody(parsed.request)))), parsed)
    }
  })

  it('match connections by id, address (IPv4-mapped or not), origin, or all', () => {
    const conn = { connectionId: 'id1', address: '::ffff:10.0.0.1', origin: 'http://app.test' }
    assert.equal(matchesTarget({ connectionId: 'id1' }, conn), true)
    assert.equal(matchesTarget({ connectionId: 'id2' }, conn), false)
    assert.equal(matchesTarget({ address: '10.0.0.1' }, conn), true)
    assert.equal(matchesTarget({ address: '10.0.0.2' }, conn), false)
    assert.equal(matchesTarget({ origin: 'http://app.test' }, conn), true)
    assert.equal(matchesTarget({ origin: 'https://app.test' }, conn), false)
    assert.equal(matchesTarget({ all: true }, conn), true)
  })
})

describe('periodic re-challenge timer', () => {
  it('fires each scheduled id once, within the interval less 10% jitter and one tick', async () => {
    const due: Array<{ id: string; at: number }> = []
    const started = Date.now()
    const timer = createRechallengeTimer({ intervalMs: 500, onDue: (ids) => ids.forEach((id) => due.push({ id, at: Date.now() })) })
    try {
      for (let i = 0; i < 50; i++) timer.schedule(`c${i}`)
      timer.schedule('cancelled')
      timer.cancel('cancelled')
      timer.schedule('c0') // rescheduling replaces, never duplicates
      assert.equal(timer.size, 50)
      await sleep(1200)
      assert.equal(due.length, 50)
      assert.equal(new Set(due.map((d) => d.id)).size, 50)
      assert.ok(!due.some((d) => d.id === 'cancelled'))
      // Never before interval - 10%; after the interval only by timer delay (generous margin: shared machine).
      for (const d of due) assert.ok(d.at - started >= 450 && d.at - started < 500 + 300, `${d.id} fired after ${d.at - started} ms`)
      assert.equal(timer.size, 0)
    } finally {
      timer.stop()
    }
  })

  it('refuses an interval below 100 ms', () => {
    assert.throws(() => createRechallengeTimer({ intervalMs: 10, onDue: () => {} }), RangeError)
  })
})

describe('memory store broadcast', () => {
  it('delivers to every subscriber of the same store until it unsubscribes', async () => {
    const store = createMemoryStore()
    const got: string[] = []
    const off = store.onBroadcast!((m) => got.push(m))
    await store.broadcast!('one')
    off()
    await store.broadcast!('two')
    assert.deepEqual(got, ['one'])
  })
})
