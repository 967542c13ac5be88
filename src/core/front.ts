/**
 * What every authenticator front (reverse proxy, forward auth, framework middleware, Lambda
 * authorizer) does with a request: ask the authenticator, then apply the mode. One place
 * decides what 401, 503 and monitor mode mean, so no front can drift from the others.
 */
import type { AccessRequest, DenyReason } from './access.ts'
import type { Authenticator } from './authenticator.ts'
import { checkRequestSignature, DEFAULT_BINDING_WINDOW_MS, type RequestMac, type RequestMacFactory, type SignatureCheck } from './binding.ts'
import { fromBase64Url } from './encoding.ts'
import { keyedRequestMac } from './request-mac.ts'
import { createQuota, type Quota } from './quota.ts'
import { WsdsError, isWsdsError } from './errors.ts'
import { NO_OBSERVER, type DecisionObserver } from './observer.ts'
import type { PolicyAction, PolicyMatch, PolicySource } from './policy.ts'
import type { ConnectionRecord } from './store.ts'

/** `enforce` refuses; `monitor` admits everything and reports what it would have done. */
export type Mode = 'enforce' | 'monitor'

/** Why a bound connection's request was refused (PROTOCOL.md, "Request binding"). */
export type SignatureDenial = 'unsigned' | 'bad-signature' | 'stale-signature'

/** `allow:policy` / `deny:policy`: a policy rule (or the policy's default) decided, not a connection. */
export type Verdict =
  | 'allow'
  | `deny:${DenyReason}`
  | `deny:${SignatureDenial}`
  | 'deny:rate-limited'
  | 'deny:store-unavailable'
  | 'allow:policy'
  | 'deny:policy'

export interface FrontDecision {
  /** Let the request through (always true in monitor mode). */
  pass: boolean
  /** What enforce mode answers: 200 (pass), 401, 403 (a deny rule), 429 (per-connection quota) or 503. */
  status: 200 | 401 | 403 | 429 | 503
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
export const RATE_LIMITED_BODY = '{"error":"rate-limited"}'
/** PROTOCOL.md, "Policy rules": what a `deny` rule answers. */
export const FORBIDDEN_BODY = '{"error":"forbidden"}'
/** Names the rule behind an `allow:policy` / `deny:policy` verdict (DEFAULT_RULE_LABEL when none matched). */
export const RULE_HEADER = 'x-wsds-rule'
/** The rule label of requests no rule matched, in RULE_HEADER and metrics (rule names cannot start with `(`). */
export const DEFAULT_RULE_LABEL = '(default)'
export const VERDICT_HEADER = 'x-wsds-verdict'
export const CONNECTION_ID_RESPONSE_HEADER = 'x-wsds-connection-id'
export const ORIGIN_RESPONSE_HEADER = 'x-wsds-origin'

export interface Front {
  decide(request: AccessRequest): Promise<FrontDecision>
  /**
   * The decision for an id the authenticator has cached as admitted, synchronously, or
   * undefined (then call `decide`). The hot path of every front: no promise, no allocation.
   * A bound connection's admission needs the request (method, target, signature): without
   * `request` it is undefined, and `decide` checks it.
   */
  decideCached(connectionId: string | undefined, request?: AccessRequest): FrontDecision | undefined
  readonly mode: Mode
  /** Decisions by verdict, plain integers for the metrics to copy at scrape time. */
  readonly decisions: Readonly<Record<string, number>>
  /** Policy rule outcomes: rule name (or DEFAULT_RULE_LABEL) -> action -> count, for the metrics. */
  readonly ruleDecisions: ReadonlyMap<string, Readonly<Record<PolicyAction, number>>>
}

export interface FrontOptions {
  authenticator: Authenticator
  /** Default 'enforce'. */
  mode?: Mode
  /** How far a signature's `t` may be from now, ms (WSDS_BINDING_WINDOW_MS, default 30000). */
  bindingWindowMs?: number
  /**
   * HMAC-SHA256 for bound connections' signatures. Default: the keyed pure-JS HMAC
   * (core/request-mac.ts), synchronous on every runtime.
   */
  requestMac?: RequestMacFactory
  /** Admitted requests per second per connectionId, bursts of twice that (WSDS_ID_RATE_LIMIT); null = off (default). */
  idRateLimit?: number | null
  /** Clock, epoch ms (default Date.now). */
  now?: () => number
  /**
   * Policy rules (core/policy.ts), read on every request so a reload takes effect at once.
   * Default: none (every request gets the WSDS check).
   */
  policy?: PolicySource
  /**
   * SHA-256 of a service token's UTF-8 bytes, for `token_sha256` rules. Default: Web Crypto
   * (async); Node adapters pass node:crypto's, which is synchronous.
   */
  sha256?: (data: Uint8Array) => Uint8Array | Promise<Uint8Array>
  /** Receives the time each decision took, store read included (core/observer.ts); default: none recorded. */
  observer?: DecisionObserver
}

/** Stands in for the request of an unbound cached admission, which reads none of it. */
const NO_REQUEST: AccessRequest = Object.freeze({ connectionId: undefined })

const encoder = new TextEncoder()
const webSha256 = async (data: Uint8Array): Promise<Uint8Array> =>
  new Uint8Array(await crypto.subtle.digest('SHA-256', data as Uint8Array<ArrayBuffer>))
// Distinct tokens remembered with their digest; a full cache starts over (clients with
// service tokens are few: this only saves a hash per request).
const TOKEN_CACHE_MAX = 256
// Longer tokens are hashed every time rather than kept: the cache stays under 256 x 512 bytes.
const TOKEN_CACHE_MAX_CHARS = 512

export function parseMode(value: string): Mode {
  if (value === 'enforce' || value === 'monitor') return value
  throw new WsdsError('ERR_CONFIG', `mode must be enforce or monitor, got ${JSON.stringify(value)}`)
}

export function createFront(options: FrontOptions): Front {
  const { authenticator } = options
  const mode = parseMode(options.mode ?? 'enforce')
  const decisions: Record<string, number> = { allow: 0 }
  const monitor = mode === 'monitor'
  const observer = options.observer ?? NO_OBSERVER
  const now = options.now ?? Date.now
  const windowMs = options.bindingWindowMs ?? DEFAULT_BINDING_WINDOW_MS
  if (!Number.isInteger(windowMs) || windowMs < 0) {
    throw new WsdsError('ERR_CONFIG', `bindingWindowMs must be a non-negative integer, got ${windowMs}`)
  }
  const macFactory = options.requestMac ?? keyedRequestMac
  const quota: Quota | null = options.idRateLimit == null ? null : createQuota({ perSecond: options.idRateLimit })
  const policySource = options.policy
  const sha256 = options.sha256 ?? webSha256
  const tokenDigests = new Map<string, Uint8Array>()
  const ruleDecisions = new Map<string, Record<PolicyAction, number>>()

  const tokenDigest = (token: string): Uint8Array | Promise<Uint8Array> => {
    const known = tokenDigests.get(token)
    if (known !== undefined) return known
    const remember = (digest: Uint8Array) => {
      if (token.length > TOKEN_CACHE_MAX_CHARS) return digest
      if (tokenDigests.size >= TOKEN_CACHE_MAX) tokenDigests.clear()
      tokenDigests.set(token, digest)
      return digest
    }
    const digest = sha256(encoder.encode(token))
    return digest instanceof Uint8Array ? remember(digest) : digest.then(remember)
  }

  // One decision object per rule name and verdict: rule outcomes repeat, so they are built once.
  const ruleOutcomes = new Map<string, FrontDecision>()
  const ruleOutcome = (match: PolicyMatch): FrontDecision | null => {
    const label = match.rule ?? DEFAULT_RULE_LABEL
    let counts = ruleDecisions.get(label)
    if (counts === undefined) ruleDecisions.set(label, (counts = { allow: 0, deny: 0, verify: 0 }))
    counts[match.action]++
    if (match.action === 'verify') return null
    const verdict: Verdict = match.action === 'allow' ? 'allow:policy' : 'deny:policy'
    decisions[verdict] = (decisions[verdict] ?? 0) + 1
    const key = `${match.action} ${label}`
    let decision = ruleOutcomes.get(key)
    if (decision === undefined) {
      const labels = { [VERDICT_HEADER]: verdict, [RULE_HEADER]: label }
      decision =
        match.action === 'allow' || monitor
          ? { pass: true, status: match.action === 'allow' ? 200 : 403, verdict, record: null, headers: labels, body: null }
          : { pass: false, status: 403, verdict, record: null, headers: {}, body: FORBIDDEN_BODY }
      Object.freeze(decision.headers)
      Object.freeze(decision)
      // Bounded by the rules a file may have (core/policy.ts MAX_RULES) times reloads with new names.
      if (ruleOutcomes.size > 4096) ruleOutcomes.clear()
      ruleOutcomes.set(key, decision)
    }
    return decision
  }

  const refuse = (status: 401 | 429 | 503, verdict: Verdict, retryAfterS = 1): FrontDecision => {
    decisions[verdict] = (decisions[verdict] ?? 0) + 1
    if (monitor) return { pass: true, status, verdict, record: null, headers: { [VERDICT_HEADER]: verdict }, body: null }
    if (status === 401) return { pass: false, status, verdict, record: null, headers: {}, body: UNAUTHORIZED_BODY }
    const body = status === 503 ? STORE_UNAVAILABLE_BODY : RATE_LIMITED_BODY
    return { pass: false, status, verdict, record: null, headers: { 'retry-after': String(retryAfterS) }, body }
  }

  // Binding step: once a connection is bound, its id alone admits nothing, in every mode
  // (PROTOCOL.md, "Request binding"). One MAC function per record object: cached admissions
  // hand back the same record, so a hit costs one HMAC and no key setup.
  const macs = new WeakMap<ConnectionRecord, RequestMac | null>()
  const macOf = (record: ConnectionRecord & { bindKey: string }): RequestMac | null => {
    let mac = macs.get(record)
    if (mac === undefined) {
      const key = fromBase64Url(record.bindKey)
      mac = key === null || key.length !== 32 ? null : macFactory(key)
      macs.set(record, mac)
    }
    return mac
  }
  const SIGNATURE_VERDICTS: Record<Exclude<SignatureCheck, 'ok'>, Verdict> = {
    unsigned: 'deny:unsigned',
    malformed: 'deny:bad-signature',
    'bad-mac': 'deny:bad-signature',
    stale: 'deny:stale-signature',
  }
  const signatureVerdict = (record: ConnectionRecord, request: AccessRequest, t: number): Verdict | null => {
    if (record.bindKey === undefined) return null
    const mac = macOf(record as ConnectionRecord & { bindKey: string })
    // A key we cannot read (a corrupt record) admits nobody.
    if (mac === null) return 'deny:bad-signature'
    const check = checkRequestSignature(
      { connectionId: record.connectionId, method: request.method, target: request.target, signature: request.signature },
      mac,
      t,
      windowMs,
    )
    return check === 'ok' ? null : SIGNATURE_VERDICTS[check]
  }

  /** Binding, then quota, then the allow decision. */
  const admitChecked = (record: ConnectionRecord, request: AccessRequest): FrontDecision => {
    const t = now()
    const denied = signatureVerdict(record, request, t)
    if (denied !== null) return refuse(401, denied)
    if (quota !== null) {
      const waitMs = quota.take(record.connectionId, t)
      if (waitMs > 0) return refuse(429, 'deny:rate-limited', Math.max(1, Math.ceil(waitMs / 1000)))
    }
    return allow(record)
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
    ruleDecisions,
    async decide(request) {
      const started = performance.now()
      // Rules first (PROTOCOL.md, "Policy rules"): a request an allow or deny rule decides
      // never needs an id, so it never costs a store read.
      const policy = policySource?.current
      if (policy !== undefined && policy.active) {
        const token = policy.usesTokens && request.serviceToken !== undefined ? await tokenDigest(request.serviceToken) : undefined
        const outcome = ruleOutcome(policy.evaluate(request, token))
        if (outcome !== null) {
          observer.requestDecided((performance.now() - started) / 1000)
          return outcome
        }
      }
      let decision
      try {
        decision = await authenticator.check(request)
        observer.requestDecided((performance.now() - started) / 1000)
      } catch (err) {
        observer.requestDecided((performance.now() - started) / 1000)
        // Fail closed: a store we cannot read admits nobody (in enforce mode), and 503 tells
        // the client to retry rather than re-verify.
        if (isWsdsError(err, 'ERR_STORE_UNAVAILABLE')) return refuse(503, 'deny:store-unavailable')
        throw err
      }
      if (!decision.admit) return refuse(401, `deny:${decision.reason}`)
      return admitChecked(decision.record, request)
    },
    decideCached(connectionId, request) {
      // Rules look at more than the id (path, method, address, token): with any in force,
      // every request takes `decide`, which reads them before the cache.
      if (policySource !== undefined && policySource.current.active) return undefined
      const started = performance.now()
      const hit = authenticator.peek(connectionId)
      if (hit === undefined) return undefined
      if (request === undefined && hit.record.bindKey !== undefined) return undefined
      const decision = admitChecked(hit.record, request ?? NO_REQUEST)
      observer.requestDecided((performance.now() - started) / 1000)
      return decision
    },
  }
}
