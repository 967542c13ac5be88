/**
 * Prometheus exposition through prom-client (server/prom.ts). The hot paths count in plain
 * integers (gateway stats, auth stats) that `collect` callbacks copy into the registry only
 * when /metrics is scraped; durations arrive one by one through the observer the server
 * injects into the gateway and the front (core/observer.ts), straight into Histograms.
 */
import { Counter, Gauge, Histogram, Registry } from './prom.ts'
import type { Authenticator } from '../core/authenticator.ts'
import type { Front } from '../core/front.ts'
import type { MetricsObserver } from '../core/observer.ts'
import type { Gateway } from '../gateway/gateway.ts'

/** 0.5 ms to 5 s: handshakes take milliseconds; decisions (cache hits) microseconds. */
export const DURATION_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
/** Proof of work takes a browser from tens of milliseconds to seconds (docs/protocol.md, "Proof of work"). */
export const POW_SOLVE_BUCKETS: readonly number[] = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16]

/** An observer that feeds prom-client Histograms, which the registry exposes. */
export interface PrometheusObserver extends MetricsObserver {
  readonly histograms: readonly Histogram[]
}

/**
 * The observer to inject into the gateway and the front before createMetricsRegistry. Its
 * Histograms belong to no registry yet (prom-client would otherwise put them in its global
 * one, and a second server in the process would collide); each method is one unlabelled
 * `observe`, no label lookup.
 */
export function createPrometheusObserver(): PrometheusObserver {
  const powSolve = durationHistogram('wsds_pow_solve_seconds', 'Proof-of-work solve time as reported by clients (answer.pow.ms; untrusted)', POW_SOLVE_BUCKETS)
  const handshake = durationHistogram('wsds_handshake_duration_seconds', 'Time from upgrade to verified, per verified handshake', DURATION_BUCKETS)
  const decision = durationHistogram('wsds_auth_decision_duration_seconds', 'Time the authenticator took to decide, store read included', DURATION_BUCKETS)
  return {
    histograms: [powSolve.histogram, handshake.histogram, decision.histogram],
    handshakeVerified: handshake.observe,
    powSolved: powSolve.observe,
    requestDecided: decision.observe,
  }
}

/**
 * A Histogram and an `observe` that cannot throw. The observer runs inside the handshake and
 * the request paths, and prom-client throws a TypeError on a value that is not a finite
 * number: such a value is dropped instead, and a negative one (the wall clock stepped back
 * during a handshake) counts as 0 rather than lowering the sum.
 */
function durationHistogram(name: string, help: string, buckets: readonly number[]): { histogram: Histogram; observe: (seconds: number) => void } {
  const histogram = new Histogram({ name, help, buckets: [...buckets], registers: [] })
  return {
    histogram,
    observe(seconds) {
      if (Number.isFinite(seconds)) histogram.observe(seconds > 0 ? seconds : 0)
    },
  }
}

export interface MetricsSources {
  gateway: Gateway
  authenticator: Authenticator
  front: Front
  /** The observer the gateway and the front were given. */
  observer: PrometheusObserver
}

export function createMetricsRegistry(sources: MetricsSources): Registry {
  const { gateway, authenticator, front, observer } = sources
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
  // Registered last, as the exposition always listed them.
  for (const histogram of observer.histograms) registry.registerMetric(histogram)
  return registry
}
