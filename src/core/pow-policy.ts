/**
 * How hard a proof of work a client gets (PROTOCOL.md, "Re-challenge and proof of work":
 * policy may raise the base difficulty per client). docs/protocol.md, "Proof of work",
 * gives the same formula in words:
 *
 * - every client address has a score: +1 per failed handshake, +1/16 per upgrade, halving
 *   every `halfLifeMs`; it adds 2 x floor(log2(1 + score)) bits (one failure: +2; three: +4);
 * - node load, the number of sockets still in their handshake, adds
 *   2 + 2 x floor(log2(load / loadThreshold)) bits once it reaches `loadThreshold`;
 * - the sum is capped at `maxBits`. With `maxBits <= baseBits` nothing escalates.
 *
 * Pure and bounded: at most `maxAddresses` scores, the least recently touched dropped first.
 */
import { MAX_POW_BITS } from './pow.ts'

export interface PowPolicyOptions {
  /** Difficulty every challenge carries, bits (0 = none unless escalated). */
  baseBits: number
  /** Cap of escalation, bits. */
  maxBits: number
  now: () => number
  /** Half-life of an address's score, ms (default 60000). */
  halfLifeMs?: number
  /** Addresses tracked at once (default 10000). */
  maxAddresses?: number
  /** Sockets in their handshake at which everyone pays more (default 1000). */
  loadThreshold?: number
}

export interface PowPolicy {
  /** Difficulty for the next challenge of a client at `address` while `load` handshakes are open. */
  bitsFor(address: string, load: number): number
  /** An upgrade from `address` was accepted. */
  recordUpgrade(address: string): void
  /** A handshake or re-challenge from `address` failed (any rejection). */
  recordFailure(address: string): void
  readonly baseBits: number
  readonly maxBits: number
  /** Addresses with a score, for metrics and tests. */
  readonly trackedAddresses: number
}

interface Score {
  points: number
  at: number
}

const UPGRADE_POINTS = 1 / 16

export function createPowPolicy(options: PowPolicyOptions): PowPolicy {
  const { baseBits, maxBits, now } = options
  const halfLifeMs = options.halfLifeMs ?? 60_000
  const maxAddresses = options.maxAddresses ?? 10_000
  const loadThreshold = options.loadThreshold ?? 1000
  for (const [name, value, min, max] of [
    ['baseBits', baseBits, 0, MAX_POW_BITS],
    ['maxBits', maxBits, 0, MAX_POW_BITS],
    ['halfLifeMs', halfLifeMs, 1, 2 ** 31],
    ['maxAddresses', maxAddresses, 0, 2 ** 31],
    ['loadThreshold', loadThreshold, 1, 2 ** 31],
  ] as const) {
    if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${value}`)
  }
  const escalates = maxBits > baseBits
  const scores = new Map<string, Score>()

  const decayed = (score: Score, t: number): number => score.points * 2 ** (-(t - score.at) / halfLifeMs)

  function add(address: string, points: number): void {
    if (!escalates || maxAddresses === 0) return
    const t = now()
    const old = scores.get(address)
    const next = { points: (old === undefined ? 0 : decayed(old, t)) + points, at: t }
    // Re-inserting moves the address to the end, so the first key is the least recently touched.
    scores.delete(address)
    scores.set(address, next)
    while (scores.size > maxAddresses) scores.delete(scores.keys().next().value!)
  }

  return {
    baseBits,
    maxBits,
    bitsFor(address, load) {
      if (!escalates) return baseBits
      let extra = 0
      const score = scores.get(address)
      if (score !== undefined) {
        const points = decayed(score, now())
        if (points < 0.01) scores.delete(address)
        else extra += 2 * Math.floor(Math.log2(1 + points))
      }
      if (load >= loadThreshold) extra += 2 + 2 * Math.floor(Math.log2(load / loadThreshold))
      return Math.min(maxBits, baseBits + extra)
    },
    recordUpgrade: (address) => add(address, UPGRADE_POINTS),
    recordFailure: (address) => add(address, 1),
    get trackedAddresses() {
      return scores.size
    },
  }
}
