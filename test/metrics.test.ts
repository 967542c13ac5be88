/** /metrics, parsed with a Prometheus text-format parser, across a scripted session. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
// @ts-expect-error no declaration file
import parsePrometheus from 'parse-prometheus-text-format'
import { eventually } from './contracts/protocol-suite.ts'
import { FORBIDDEN_ORIGIN, TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { openSocket, verifiedHandshake } from './helpers/ws-client.ts'

interface Family {
  name: string
  type: string
  metrics: Array<{ value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }>
}

async function scrape(url: string, token?: string): Promise<Map<string, Family>> {
  const res = await fetch(`${url}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {})
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /text\/plain/)
  const families = (parsePrometheus as (t: string) => Family[])(await res.text())
  return new Map(families.map((f) => [f.name, f]))
}

/** Value of one series (labels must match exactly the given subset), 0 when absent. */
function value(m: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const family = m.get(name)
  if (!family) return 0
  const series = family.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v))
  if (!series) return 0
  // Histograms: this parser drops _count when series carry labels; +Inf is the same number.
  return Number(series.value ?? series.count ?? series.buckets?.['+Inf'])
}

describe('Prometheus metrics', () => {
  let s: TestServer
  before(async () => (s = await startTestServer()))
  after(() => s.close())

  it('counts a scripted session exactly: 1 upgrade, 1 challenge, 1 verified, N decisions', async () => {
    const before = await scrape(s.url)
    const { client, connectionId } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    const N = 5
    for (let i = 0; i < N; i++) assert.equal((await fetch(`${s.url}/api/greeting`, { headers: { connectionId } })).status, 200)
    assert.equal((await fetch(`${s.url}/api/greeting`)).status, 401)
    await assert.rejects(openSocket(s.wsUrl, { origin: FORBIDDEN_ORIGIN }), { status: 403 })
    const mid = await scrape(s.url)
    const delta = (name: string, labels?: Record<string, string>) => value(mid, name, labels) - value(before, name, labels)
    assert.equal(delta('wsds_upgrades_total', { result: 'accepted' }), 1)
    assert.equal(delta('wsds_upgrades_total', { result: 'refused', reason: 'origin' }), 1)
    assert.equal(delta('wsds_challenges_issued_total'), 1)
    assert.equal(delta('wsds_outcomes_total', { outcome: 'verified' }), 1)
    assert.equal(delta('wsds_outcomes_total', { outcome: 'wrong-answer' }), 0)
    assert.equal(delta('wsds_auth_decisions_total', { result: 'allow', mode: 'enforce' }), N)
    assert.equal(delta('wsds_auth_decisions_total', { result: 'deny:missing', mode: 'enforce' }), 1)
    // First read misses the cache, the rest hit it.
    assert.equal(delta('wsds_auth_cache_total', { result: 'miss' }), 1)
    assert.equal(delta('wsds_auth_cache_total', { result: 'hit' }), N - 1)
    assert.equal(delta('wsds_handshake_duration_seconds'), 1)
    assert.equal(delta('wsds_auth_decision_duration_seconds'), N + 1)
    assert.equal(value(mid, 'wsds_open_sockets'), 1)
    assert.equal(value(mid, 'wsds_verified_sockets'), 1)
    const hist = mid.get('wsds_handshake_duration_seconds')!
    assert.equal(hist.type, 'HISTOGRAM')
    const buckets = Object.entries(hist.metrics[0]!.buckets!).map(([le, n]) => [Number(le), Number(n)] as const).sort((a, b) => a[0] - b[0])
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]![1] >= buckets[i - 1]![1], 'buckets are cumulative')

    await client.close()
    await eventually(async () => value(await scrape(s.url), 'wsds_open_sockets') === 0, 2000, 'socket gauge back to 0')
    const end = await scrape(s.url)
    assert.equal(value(end, 'wsds_revocations_total') - value(before, 'wsds_revocations_total'), 1)
  })

  it('names every metric wsds_* with _total on counters and _seconds on histograms', async () => {
    const m = await scrape(s.url)
    for (const f of m.values()) {
      assert.match(f.name, /^wsds_/)
      if (f.type === 'COUNTER') assert.match(f.name, /_total$/)
      if (f.type === 'HISTOGRAM') assert.match(f.name, /_seconds$/)
    }
  })

  it('serves metrics on a port and path of their own when configured, and not on the gateway port', async () => {
    const apart = await startTestServer({ metricsPort: 0, metricsPath: '/internal/prom' })
    try {
      assert.notEqual(new URL(apart.metricsUrl).port, String(apart.port))
      const res = await fetch(apart.metricsUrl)
      assert.equal(res.status, 200)
      assert.match(await res.text(), /wsds_open_sockets/)
      assert.equal((await fetch(`${apart.url}/internal/prom`)).status, 404)
      assert.equal((await fetch(`${apart.url}/metrics`)).status, 404)
    } finally {
      await apart.close()
    }
  })

  it('requires the bearer token when WSDS_METRICS_TOKEN is set', async () => {
    const guarded = await startTestServer({ metricsToken: 's3cret-token' })
    assert.equal((await fetch(`${guarded.url}/metrics`)).status, 401)
    assert.equal((await fetch(`${guarded.url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401)
    const m = await scrape(guarded.url, 's3cret-token')
    assert.ok(m.has('wsds_open_sockets'))
    await guarded.close()
  })
})
