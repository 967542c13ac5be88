/**
 * What every authenticator front (reverse proxy, forward auth, framework middleware, Lambda
 * authorizer) does with a request: ask the authenticator, then apply the mode. One place
 * decides what 401, 503 and monitor mode mean, so no front can drift from the others.
 */
import type { AccessRequest, DenyReason } from './access.ts'
import type { Authenticator } from './authenticator.ts'
import { WsdsError, isWsdsError } from './errors.ts'
import { createDurationHistogram, type DurationHistogram } from './histogram.ts'
import type { ConnectionRecord } from './store.ts'

/** `enforce` refuses; `monitor` admits everything and reports what it would have done. */
export type Mode = 'enforce' | 'monitor'

export type Verdict = 'allow' | `deny:${DenyReason}` | 'deny:store-unavailable'

export interface FrontDecision {
  /** Let the request through (always true in monitor mode). */
  pass: boolean
  /** What enforce mode answers: 200 (pass), 401 or 503. */
  status: 200 | 401 | 503
  verdict: Verdict
  /** The admitted connection, when there is one. */
  record: ConnectionRecord | null
  /**
   * Headers for the upstream when passing (`x-wsds-verdict`, and the connection's id and
   * origin when admitted), or for the refusal.
   */
  headers: Record<string, string>
  /** JSON body of the refusal; null when passing. */
  body: string | null
}

export const UNAUTHORIZED_BODY = '{"error":"unauthorized"}'
export const STORE_UNAVAILABLE_BODY = '{"error":"store-unavailable"}'
export const VERDICT_HEADER = 'x-wsds-verdict'
export const CONNECTION_ID_RESPONSE_HEADER = 'x-wsds-connection-id'
export const ORIGIN_RESPONSE_HEADER = 'x-wsds-origin'

export interface Front {
  decide(request: AccessRequest): Promise<FrontDecision>
  /**
   * The decision for an id the authenticator has cached as admitted, synchronously, or
   * undefined (then call `decide`). The hot path of every front: no promise, no allocation.
   */
  decideCached(connectionId: string | undefined): FrontDecision | undefined
  readonly mode: Mode
  /** Decisions by verdict, plain integers for the metrics to copy at scrape time. */
  readonly decisions: Readonly<Record<string, number>>
  /** Time to decide, including any store read. */
  readonly decisionSeconds: DurationHistogram
}

export interface FrontOptions {
  authenticator: Authenticator
  /** Default 'enforce'. */
  mode?: Mode
}

export function parseMode(value: string): Mode {
  if (value === 'enforce' || value === 'monitor') return value
  throw new WsdsError('ERR_CONFIG', `mode must be enforce or monitor, got ${JSON.stringify(value)}`)
}

export function createFront(options: FrontOptions): Front {
  const { authenticator } = options
  const mode = parseMode(options.mode ?? 'enforce')
  const decisions: Record<string, number> = { allow: 0 }
  const monitor = mode === 'monitor'
  const decisionSeconds = createDurationHistogram()

  const refuse = (status: 401 | 503, verdict: Verdict): FrontDecision => {
    decisions[verdict] = (decisions[verdict] ?? 0) + 1
    if (monitor) return { pass: true, status, verdict, record: null, headers: { [VERDICT_HEADER]: verdict }, body: null }
    const headers: Record<string, string> = status === 503 ? { 'retry-after': '1' } : {}
    return { pass: false, status, verdict, record: null, headers, body: status === 503 ? STORE_UNAVAILABLE_BODY : UNAUTHORIZED_BODY }
  }

  // One allow decision per record object: cache hits return the same record, so they reuse
  // the same decision (and headers) instead of building them per request.
  const allowed = new WeakMap<ConnectionRecord, FrontDecision>()
  const allow = (record: ConnectionRecord): FrontDecision => {
    decisions.allow!++
    let decision = allowed.get(record)
    if (decision === undefined) {
      decision = {
        pass: true,
        status: 200,
        verdict: 'allow',
        record,
        headers: {
          [VERDICT_HEADER]: 'allow',
          [CONNECTION_ID_RESPONSE_HEADER]: record.connectionId,
          [ORIGIN_RESPONSE_HEADER]: record.origin,
        },
        body: null,
      }
      // Shared between requests: nobody may change it.
      Object.freeze(decision.headers)
      Object.freeze(decision)
      allowed.set(record, decision)
    }
    return decision
  }

  return {
    mode,
    decisions,
    decisionSeconds,
    async decide(request) {
      const started = performance.now()
      let decision
      try {
        decision = await authenticator.check(request)
        decisionSeconds.observe((performance.now() - started) / 1000)
      } catch (err) {
        decisionSeconds.observe((performance.now() - started) / 1000)
        // Fail closed: a store we cannot read admits nobody (in enforce mode), and 503 tells
        // the client to retry rather than re-verify.
        if (isWsdsError(err, 'ERR_STORE_UNAVAILABLE')) return refuse(503, 'deny:store-unavailable')
        throw err
      }
      if (!decision.admit) return refuse(401, `deny:${decision.reason}`)
      return allow(decision.record)
    },
    decideCached(connectionId) {
      const started = performance.now()
      const hit = authenticator.peek(connectionId)
      if (hit === undefined) return undefined
      const decision = allow(hit.record)
      decisionSeconds.observe((performance.now() - started) / 1000)
      return decision
    },
  }
}
