/**
 * Proof of work bound to a challenge token (PROTOCOL.md, "Re-challenge and proof of work";
 * the puzzle is defined in docs/protocol.md, "Proof of work"):
 *
 *   find a nonce n such that SHA-256(UTF-8(token + ":" + n)) starts with `bits` zero bits.
 *
 * The token is fresh per challenge and spent by its one answer, so the work is spent with
 * it: a nonce found for one token is worthless for any other. Checking costs one hash. The
 * hash is injected (node:crypto on the gateway) so that core stays free of Node modules.
 */

/** SHA-256 of `data`, 32 bytes. */
export type Sha256 = (data: Uint8Array) => Uint8Array

/** Largest difficulty a gateway may ask for; beyond it a page would spin for minutes. */
export const MAX_POW_BITS = 32
/** A nonce is 1..32 characters of the base64url alphabet (the SDK sends a decimal counter). */
const NONCE_RE = /^[A-Za-z0-9_-]{1,32}$/
/** A reported solve time above an hour is noise, not a measurement. */
const MAX_REPORTED_MS = 3_600_000

/** `answer.pow` as a client sends it: `{"nonce":"<n>","ms":<solve time, optional>}`. */
export interface PowAnswer {
  nonce: string
  /** Solve time the client reports, ms; null when absent or not a sane number. For metrics only. */
  solveMs: number | null
}

export type PowCheck = { ok: true; solveMs: number | null } | { ok: false; why: 'missing' | 'malformed' | 'insufficient' }

/** Reads `answer.pow`; null when it is not the documented shape. */
export function parsePowAnswer(value: unknown): PowAnswer | null {
  if (typeof value !== 'object' || value === null) return null
  const v = value as { nonce?: unknown; ms?: unknown }
  if (typeof v.nonce !== 'string' || !NONCE_RE.test(v.nonce)) return null
  const ms = typeof v.ms === 'number' && Number.isFinite(v.ms) && v.ms >= 0 && v.ms <= MAX_REPORTED_MS ? v.ms : null
  return { nonce: v.nonce, solveMs: ms }
}

/** The bytes that are hashed: UTF-8 of `token:nonce` (both ASCII). */
export function powInput(token: string, nonce: string): Uint8Array {
  const text = token + ':' + nonce
  const out = new Uint8Array(text.length)
  // Tokens and nonces are ASCII (checked), so one char is one byte and no TextEncoder is needed.
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 0x7f
  return out
}

/** True when `digest` starts with at least `bits` zero bits. */
export function hasLeadingZeroBits(digest: Uint8Array, bits: number): boolean {
  let i = 0
  for (; bits >= 8; bits -= 8) if (digest[i++] !== 0) return false
  return bits === 0 || (digest[i]! >>> (8 - bits)) === 0
}

/** Verifies the work in `answerPow` for `token` at `bits` with one hash. */
export function verifyPow(token: string, bits: number, answerPow: unknown, sha256: Sha256): PowCheck {
  if (answerPow === undefined) return { ok: false, why: 'missing' }
  const answer = parsePowAnswer(answerPow)
  if (answer === null) return { ok: false, why: 'malformed' }
  if (!hasLeadingZeroBits(sha256(powInput(token, answer.nonce)), bits)) return { ok: false, why: 'insufficient' }
  return { ok: true, solveMs: answer.solveMs }
}

/** Checks a difficulty from configuration or an operator request. */
export function isPowBits(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_POW_BITS
}
