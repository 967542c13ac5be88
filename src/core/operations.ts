/**
 * Operator re-challenges (PROTOCOL.md, "Re-challenge and proof of work": an operator can ask
 * for a re-challenge of one id or of all connections). One request shape for the HTTP
 * endpoint, the CLI and the cluster broadcast (docs/protocol.md, "Step-up"):
 *
 *   {"connectionId":"<id>"} | {"address":"<ip>"} | {"origin":"<origin>"} | {"all":true}
 *   plus optionally "powBits": <int 1..32>, proof of work for that one challenge.
 */
import { MAX_POW_BITS } from './pow.ts'

/** Path of the operations endpoint (docs/protocol.md, "Step-up"). */
export const ADMIN_RECHALLENGE_PATH = '/wsds/admin/rechallenge'

export type RechallengeTarget =
  | { connectionId: string }
  | { address: string }
  | { origin: string }
  | { all: true }

export interface RechallengeRequest {
  target: RechallengeTarget
  /** Proof of work for that challenge, raising the connection's usual difficulty; absent = usual. */
  powBits?: number
}

export type ParsedRechallenge = { ok: true; request: RechallengeRequest } | { ok: false; error: string }

const fail = (error: string): ParsedRechallenge => ({ ok: false, error })
const TARGET_KEYS = ['connectionId', 'address', 'origin', 'all'] as const

/** Validates a re-challenge request; the error names the field. */
export function parseRechallengeRequest(value: unknown): ParsedRechallenge {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail('body must be a JSON object')
  const v = value as Record<string, unknown>
  const given = TARGET_KEYS.filter((k) => v[k] !== undefined)
  if (given.length !== 1) return fail('give exactly one of "connectionId", "address", "origin", "all"')
  let target: RechallengeTarget
  const text = (key: string, max: number): string | null => {
    const s = v[key]
    return typeof s === 'string' && s.length > 0 && s.length <= max && !/[\s\x00-\x1f]/.test(s) ? s : null
  }
  switch (given[0]) {
    case 'connectionId': {
      const id = text('connectionId', 128)
      if (id === null) return fail('"connectionId" must be a non-empty string')
      target = { connectionId: id }
      break
    }
    case 'address': {
      const address = text('address', 64)
      if (address === null || !/^[0-9A-Fa-f.:]+$/.test(address)) return fail('"address" must be an IPv4 or IPv6 address')
      target = { address: normalizeAddress(address) }
      break
    }
    case 'origin': {
      const origin = text('origin', 512)
      if (origin === null || !/^https?:\/\/[^/]+$/i.test(origin)) return fail('"origin" must be an origin like https://app.example.com')
      target = { origin: origin.toLowerCase() }
      break
    }
    default:
      if (v.all !== true) return fail('"all" must be true')
      target = { all: true }
  }
  const request: RechallengeRequest = { target }
  if (v.powBits !== undefined) {
    if (typeof v.powBits !== 'number' || !Number.isInteger(v.powBits) || v.powBits < 1 || v.powBits > MAX_POW_BITS) {
      return fail(`"powBits" must be an integer in [1, ${MAX_POW_BITS}]`)
    }
    request.powBits = v.powBits
  }
  return { ok: true, request }
}

/** The request back in its wire shape (what parseRechallengeRequest reads), for the broadcast. */
export function rechallengeBody(request: RechallengeRequest): Record<string, unknown> {
  return { ...request.target, ...(request.powBits !== undefined ? { powBits: request.powBits } : {}) }
}

/** IPv4-mapped IPv6 (`::ffff:10.0.0.1`, what a dual-stack socket reports) compares as IPv4. */
export function normalizeAddress(address: string): string {
  const a = address.toLowerCase()
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a
}

/** Does a connection with this id, client address and origin fall under `target`? */
export function matchesTarget(target: RechallengeTarget, conn: { connectionId: string; address: string; origin: string }): boolean {
  if ('all' in target) return true
  if ('connectionId' in target) return target.connectionId === conn.connectionId
  if ('address' in target) return target.address === normalizeAddress(conn.address)
  return target.origin === conn.origin.toLowerCase()
}
