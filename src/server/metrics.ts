/**
 * Prometheus exposition. The hot paths count in plain integers (gateway stats, auth stats);
 * `collect` callbacks copy them into the registry (server/prometheus.ts, prom-client's API)
 * only when /metrics is scraped.
 */
import { Counter, Gauge, Registry } from './prometheus.ts'
import type { DurationHistogram } from '../core/histogram.ts'
import type { Authenticator } from '../core/authenticator.ts'
import type { Front } from '../core/front.ts'
import type { Gateway } from '../gateway/gateway.ts'

export interface MetricsSources {
  gateway: Gateway
  authenticator: Authenticator
  front: Front
}

export function createMetricsRegistry(sources: MetricsSources): Registry {
  const { gateway, authenticator, front } = sources
  const registry = new Registry()
  registry.setDefaultLabels({ node: gateway.nodeId })
  const s = gateway.stats

  new Counter({
    name: 'wsds_upgrades_total',
    help: 'WebSocket upgrade requests, by result and refusal reason',
    labelNames: ['result', 'reason'],
    registers: [registry],
    collect() {
      this.reset()
      this.inc({ result: 'accepted', reason: '' }, s.upgradesAccepted)
      for (const [reason, n] of Object.entries(s.upgradesRefused)) this.inc({ result: 'refused', reason }, n)
    },
  })
  new Counter({
    name: 'wsds_challenges_issued_total',
    help: 'Challenges sent, first and re-challenges',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(s.challengesIssued)
    },
  })
  new Counter({
    name: 'wsds_outcomes_total',
    help: 'Challenge outcomes: verified, or the rejection reason',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [outcome, n] of Object.entries(s.outcomes)) this.inc({ outcome }, n)
    },
  })
  new Counter({
    name: 'wsds_engine_checks_total',
    help: 'Engine-check verdicts of answers (match, mismatch, missing), by browser family from the User-Agent',
    labelNames: ['family', 'verdict'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [family, byVerdict] of Object.entries(s.engineChecks)) {
        for (const [verdict, n] of Object.entries(byVerdict)) this.inc({ family, verdict }, n)
      }
    },
  })
  new Counter({
    name: 'wsds_bad_messages_total',
    help: 'Malformed client frames answered with bad-message',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(s.badFrames)
    },
  })
  new Counter({
    name: 'wsds_sockets_rate_limited_total',
    help: 'Sockets closed with 4429 for sending messages faster than a page does',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(s.rateLimitedSockets)
    },
  })
  new Counter({
    name: 'wsds_auth_decisions_total',
    help: 'Authenticator decisions by verdict (allow, deny:<reason>) and mode (in monitor mode denials are only counted)',
    labelNames: ['result', 'mode'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [result, n] of Object.entries(front.decisions)) this.inc({ result, mode: front.mode }, n)
    },
  })
  new Counter({
    name: 'wsds_policy_decisions_total',
    help: 'Policy rule outcomes by rule name ((default) when none matched) and action (allow, deny, verify)',
    labelNames: ['rule', 'action', 'mode'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [rule, counts] of front.ruleDecisions) {
        for (const [action, n] of Object.entries(counts)) if (n > 0) this.inc({ rule, action, mode: front.mode }, n)
      }
    },
  })
  new Counter({
    name: 'wsds_auth_cache_total',
    help: 'Authenticator cache lookups by result (hit, miss)',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset()
      this.inc({ result: 'hit' }, authenticator.stats.cacheHits)
      this.inc({ result: 'miss' }, authenticator.stats.cacheMisses)
    },
  })
  new Counter({
    name: 'wsds_revocations_total',
    help: 'Cached ids dropped because their record was deleted',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(authenticator.stats.revocations)
    },
  })
  new Counter({
    name: 'wsds_store_outage_admissions_total',
    help: 'Requests admitted from the cache while the store was unreachable (WSDS_STORE_OUTAGE=cached)',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(authenticator.stats.outageAdmissions)
    },
  })
  new Counter({
    name: 'wsds_store_errors_total',
    help: 'Store operations that failed',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(s.storeErrors + authenticator.stats.storeErrors)
    },
  })
  new Gauge({
    name: 'wsds_open_sockets',
    help: 'Open WebSocket connections on this node',
    registers: [registry],
    collect() {
      this.set(gateway.openConnections)
    },
  })
  new Gauge({
    name: 'wsds_verified_sockets',
    help: 'Verified WebSocket connections on this node',
    registers: [registry],
    collect() {
      this.set(gateway.verifiedConnections)
    },
  })
  new Counter({
    name: 'wsds_rechallenges_total',
    help: 'Re-challenges sent to verified connections, by trigger (periodic, operator)',
    labelNames: ['trigger'],
    registers: [registry],
    collect() {
      this.reset()
      this.inc({ trigger: 'periodic' }, s.rechallenges.periodic)
      this.inc({ trigger: 'operator' }, s.rechallenges.operator)
    },
  })
  new Counter({
    name: 'wsds_pow_challenges_total',
    help: 'Challenges that asked for proof of work, by difficulty in bits',
    labelNames: ['bits'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [bits, n] of Object.entries(s.powIssued)) this.inc({ bits }, n)
    },
  })
  new Counter({
    name: 'wsds_pow_solved_total',
    help: 'Answers whose proof of work was valid',
    registers: [registry],
    collect() {
      this.reset()
      this.inc(s.powSolved)
    },
  })
  registerHistogram(registry, 'wsds_pow_solve_seconds', 'Proof-of-work solve time as reported by clients (answer.pow.ms; untrusted)', s.powSolveSeconds)
  registerHistogram(registry, 'wsds_handshake_duration_seconds', 'Time from upgrade to verified, per verified handshake', s.handshakeSeconds)
  registerHistogram(registry, 'wsds_auth_decision_duration_seconds', 'Time the authenticator took to decide, store read included', front.decisionSeconds)
  return registry
}

/**
 * Exposes a plain-integer histogram as a Prometheus histogram. prom-client's Histogram can
 * only be fed observation by observation; this reads the counts at scrape time instead.
 */
function registerHistogram(registry: Registry, name: string, help: string, h: DurationHistogram): void {
  registry.registerMetric({
    name,
    async get() {
      const values: Array<{ metricName: string; labels: Record<string, string | number>; value: number }> = []
      let cumulative = 0
      h.bounds.forEach((le, i) => {
        cumulative += h.counts[i]!
        values.push({ metricName: `${name}_bucket`, labels: { le }, value: cumulative })
      })
      values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: h.count })
      values.push({ metricName: `${name}_sum`, labels: {}, value: h.sum })
      values.push({ metricName: `${name}_count`, labels: {}, value: h.count })
      return { name, help, type: 'histogram', values, aggregator: 'sum' }
    },
    reset() {},
  } as unknown as Parameters<Registry['registerMetric']>[0])
}
