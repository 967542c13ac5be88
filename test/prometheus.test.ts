/**
 * server/metrics.ts on prom-client: the families /metrics lists (names, types and help texts
 * are a contract with docs/integrations.md and deploy/grafana/wsds-dashboard.json), the node
 * label, counters copied at scrape time, and the observer's histograms.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
// @ts-expect-error no declaration file
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { register as globalRegistry } from 'prom-client'
import { createAuthenticator } from '../src/core/authenticator.ts'
import { createFront } from '../src/core/front.ts'
import { createKeyRing } from '../src/core/keyring.ts'
import { createGateway, type Gateway } from '../src/gateway/gateway.ts'
import { createMetricsRegistry, createPrometheusObserver, type PrometheusObserver } from '../src/server/metrics.ts'
import type { Registry } from '../src/server/prom.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { TEST_ORIGIN, testKeySet } from './helpers/server.ts'

interface Family {
  name: string
  help: string
  type: string
  metrics: Array<{ value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }>
}

/** What /metrics listed before prom-client fed it, in this order. */
export const FAMILIES: ReadonlyArray<readonly [name: string, type: string, help: string]> = [
  ['wsds_upgrades_total', 'COUNTER', 'WebSocket upgrade requests, by result and refusal reason'],
  ['wsds_challenges_issued_total', 'COUNTER', 'Challenges sent, first and re-challenges'],
  ['wsds_outcomes_total', 'COUNTER', 'Challenge outcomes: verified, or the rejection reason'],
  ['wsds_engine_checks_total', 'COUNTER', 'Engine-check verdicts of answers (match, mismatch, missing), by browser family from the User-Agent'],
  ['wsds_bad_messages_total', 'COUNTER', 'Malformed client frames answered with bad-message'],
  ['wsds_sockets_rate_limited_total', 'COUNTER', 'Sockets closed with 4429 for sending messages faster than a page does'],
  ['wsds_auth_decisions_total', 'COUNTER', 'Authenticator decisions by verdict (allow, deny:<reason>) and mode (in monitor mode denials are only counted)'],
  ['wsds_policy_decisions_total', 'COUNTER', 'Policy rule outcomes by rule name ((default) when none matched) and action (allow, deny, verify)'],
  ['wsds_auth_cache_total', 'COUNTER', 'Authenticator cache lookups by result (hit, miss)'],
  ['wsds_revocations_total', 'COUNTER', 'Cached ids dropped because their record was deleted'],
  ['wsds_store_outage_admissions_total', 'COUNTER', 'Requests admitted from the cache while the store was unreachable (WSDS_STORE_OUTAGE=cached)'],
  ['wsds_store_errors_total', 'COUNTER', 'Store operations that failed'],
  ['wsds_open_sockets', 'GAUGE', 'Open WebSocket connections on this node'],
  ['wsds_verified_sockets', 'GAUGE', 'Verified WebSocket connections on this node'],
  ['wsds_rechallenges_total', 'COUNTER', 'Re-challenges sent to verified connections, by trigger (periodic, operator)'],
  ['wsds_pow_challenges_total', 'COUNTER', 'Challenges that asked for proof of work, by difficulty in bits'],
  ['wsds_pow_solved_total', 'COUNTER', 'Answers whose proof of work was valid'],
  ['wsds_pow_solve_seconds', 'HISTOGRAM', 'Proof-of-work solve time as reported by clients (answer.pow.ms; untrusted)'],
  ['wsds_handshake_duration_seconds', 'HISTOGRAM', 'Time from upgrade to verified, per verified handshake'],
  ['wsds_auth_decision_duration_seconds', 'HISTOGRAM', 'Time the authenticator took to decide, store read included'],
]

const parse = (text: string) => parsePrometheusTextFormat(text) as Family[]

/** The value of a sample line (the parser drops histograms' _sum and _count when they carry labels). */
function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
  assert.ok(line, `no ${name} line`)
  return Number(line.slice(line.lastIndexOf(' ') + 1))
}

function setup(): { gateway: Gateway; observer: PrometheusObserver; registry: Registry } {
  const store = createMemoryStore()
  const observer = createPrometheusObserver()
  const authenticator = createAuthenticator({ store })
  const front = createFront({ authenticator, observer })
  const gateway = createGateway({ store, keyRing: createKeyRing([testKeySet]), allowedOrigins: [TEST_ORIGIN], nodeId: 'node-a', observer })
  return { gateway, observer, registry: createMetricsRegistry({ gateway, authenticator, front, observer }) }
}

describe('Prometheus metrics registry (prom-client)', () => {
  const gateways: Gateway[] = []
  const fresh = () => {
    const made = setup()
    gateways.push(made.gateway)
    return made
  }
  after(() => Promise.all(gateways.map((g) => g.close())))

  it('lists every family with the same name, type and help text as before, in the same order', async () => {
    const { registry } = fresh()
    const families = parse(await registry.metrics())
    assert.deepEqual(
      families.map((f) => [f.name, f.type, f.help]),
      FAMILIES.map((f) => [...f]),
    )
    assert.equal(registry.contentType, 'text/plain; version=0.0.4; charset=utf-8')
  })

  it('labels every sample, histogram buckets included, with the node', async () => {
    const { registry, observer } = fresh()
    observer.handshakeVerified(0.002)
    const text = await registry.metrics()
    const samples = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'))
    assert.ok(samples.length > 40)
    for (const line of samples) assert.match(line, /\{[^}]*node="node-a"[^}]*\} /, line)
  })

  it('copies the plain-integer counters when scraped, and only the label sets they hold then', async () => {
    const { registry, gateway } = fresh()
    const value = async (name: string, labels: Record<string, string>) => {
      const family = parse(await registry.metrics()).find((f) => f.name === name)!
      return family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v))?.value
    }
    assert.equal(await value('wsds_upgrades_total', { result: 'refused', reason: 'origin' }), '0')
    gateway.stats.upgradesRefused.origin += 2
    assert.equal(await value('wsds_upgrades_total', { result: 'refused', reason: 'origin' }), '2')
    gateway.stats.upgradesRefused.origin++
    assert.equal(await value('wsds_upgrades_total', { result: 'refused', reason: 'origin' }), '3', 'a scrape does not add to the last one')
    gateway.stats.powIssued[12] = 4
    assert.equal(await value('wsds_pow_challenges_total', { bits: '12' }), '4')
    delete gateway.stats.powIssued[12]
    assert.equal(await value('wsds_pow_challenges_total', { bits: '12' }), undefined)
  })

  it('puts observed durations into cumulative buckets with their sum and count', async () => {
    const { registry, observer } = fresh()
    for (const seconds of [0.0007, 0.003, 7]) observer.handshakeVerified(seconds)
    observer.powSolved(0.3)
    observer.requestDecided(0.00001)
    const text = await registry.metrics()
    const families = new Map(parse(text).map((f) => [f.name, f]))
    const handshake = families.get('wsds_handshake_duration_seconds')!.metrics[0]!
    assert.equal(handshake.buckets!['0.0005'], '0')
    assert.equal(handshake.buckets!['0.001'], '1')
    assert.equal(handshake.buckets!['0.005'], '2')
    assert.equal(handshake.buckets!['5'], '2')
    assert.equal(handshake.buckets!['+Inf'], '3')
    assert.equal(sample(text, 'wsds_handshake_duration_seconds_sum'), 0.0007 + 0.003 + 7)
    assert.equal(sample(text, 'wsds_handshake_duration_seconds_count'), 3)
    const pow = families.get('wsds_pow_solve_seconds')!.metrics[0]!
    assert.deepEqual(
      Object.keys(pow.buckets!).map((le) => (le === '+Inf' ? Infinity : Number(le))).sort((x, y) => x - y),
      [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, Infinity],
    )
    assert.equal(pow.buckets!['0.25'], '0')
    assert.equal(pow.buckets!['0.5'], '1')
    assert.equal(families.get('wsds_auth_decision_duration_seconds')!.metrics[0]!.buckets!['0.0005'], '1')
  })

  it('drops a duration that is not a finite number and counts a negative one as 0, never throwing into the hot path', async () => {
    const { registry, observer } = fresh()
    for (const bad of [Number.NaN, Infinity, -Infinity]) assert.doesNotThrow(() => observer.requestDecided(bad))
    observer.handshakeVerified(-0.25)
    const text = await registry.metrics()
    const families = new Map(parse(text).map((f) => [f.name, f]))
    assert.equal(families.get('wsds_auth_decision_duration_seconds')!.metrics[0]!.buckets!['+Inf'], '0')
    const handshake = families.get('wsds_handshake_duration_seconds')!.metrics[0]!
    assert.equal(handshake.buckets!['0.0005'], '1')
    assert.equal(sample(text, 'wsds_handshake_duration_seconds_sum'), 0)
  })

  it("keeps every metric out of prom-client's global registry, so two servers fit in one process", async () => {
    const a = fresh()
    const b = fresh()
    a.observer.handshakeVerified(1)
    assert.match(await b.registry.metrics(), /^wsds_handshake_duration_seconds_count\{node="node-a"\} 0$/m, 'observers do not share histograms')
    assert.deepEqual(
      globalRegistry.getMetricsAsArray().filter((m) => m.name.startsWith('wsds_')),
      [],
    )
  })
})
