/**
 * Plain integer counters for the gateway. The handshake path only increments fields; the
 * metrics adapter copies them into Prometheus at scrape time, which keeps a label lookup off
 * the hot path. Durations are not counts: they go to the injected observer (core/observer.ts).
 */
import type { EngineVerdict } from '../core/engine-check.ts'
import type { RejectReason } from '../core/protocol.ts'

export type RefusalReason = 'origin' | 'rate-limit' | 'store-unavailable' | 'shutting-down'
/** `bad-pow`: missing or insufficient proof of work, sent as `wrong-answer` on the wire. */
export type Outcome = RejectReason | 'verified' | 'too-many-bad-frames' | 'bad-pow'

export interface GatewayStats {
  upgradesAccepted: number
  upgradesRefused: Record<RefusalReason, number>
  challengesIssued: number
  outcomes: Record<Outcome, number>
  badFrames: number
  oversizedFrames: number
  /** Sockets closed with 4429 for sending messages too fast. */
  rateLimitedSockets: number
  closed: number
  storeErrors: number
  /** Engine-check verdicts by browser family from the User-Agent (docs/protocol.md, "Engine checks"). */
  engineChecks: Record<BrowserFamily, Record<EngineVerdict, number>>
  /** Re-challenges sent to verified connections, by what asked for them. */
  rechallenges: { periodic: number; operator: number }
  /** Challenges that asked for proof of work, by difficulty (bits). */
  powIssued: Record<number, number>
  /** Answers with valid proof of work. */
  powSolved: number
}

export type BrowserFamily = 'chromium' | 'firefox' | 'safari' | 'other'
const verdicts = (): Record<EngineVerdict, number> => ({ match: 0, mismatch: 0, missing: 0 })

export function createGatewayStats(): GatewayStats {
  return {
    upgradesAccepted: 0,
    upgradesRefused: { origin: 0, 'rate-limit': 0, 'store-unavailable': 0, 'shutting-down': 0 },
    challengesIssued: 0,
    outcomes: {
      verified: 0,
      'wrong-answer': 0,
      'bad-token': 0,
      'bad-domain': 0,
      'stale-keyset': 0,
      timeout: 0,
      'unsupported-version': 0,
      'bad-binding': 0,
      'binding-required': 0,
      'unsupported-form': 0,
      'too-many-bad-frames': 0,
      'bad-pow': 0,
    },
    badFrames: 0,
    oversizedFrames: 0,
    rateLimitedSockets: 0,
    closed: 0,
    storeErrors: 0,
    engineChecks: { chromium: verdicts(), firefox: verdicts(), safari: verdicts(), other: verdicts() },
    rechallenges: { periodic: 0, operator: 0 },
    powIssued: {},
    powSolved: 0,
  }
}
