/**
 * CSPRNG source for ids, tokens, nonces and challenge draws. A handshake needs a few hundred
 * random bytes; asking the OS for them one call at a time costs more than the rest of the
 * handshake, so bytes are drawn in pools and handed out in slices.
 */
export interface RandomSource {
  /** Fills and returns `n` fresh random bytes. */
  bytes(n: number): Uint8Array
}

export interface RandomPoolOptions {
  /** Bytes drawn from the CSPRNG at a time (default 8192; at most 65536, Web Crypto's cap). */
  poolBytes?: number
  /** The CSPRNG; defaults to Web Crypto's `getRandomValues`, present in Node 20 and browsers. */
  fill?: (target: Uint8Array<ArrayBuffer>) => void
}

export function createRandomPool(options: RandomPoolOptions = {}): RandomSource {
  const poolBytes = options.poolBytes ?? 8192
  if (!Number.isInteger(poolBytes) || poolBytes < 64 || poolBytes > 65536) {
    throw new RangeError(`poolBytes must be an integer in [64, 65536], got ${poolBytes}`)
  }
  const fill = options.fill ?? ((target: Uint8Array<ArrayBuffer>) => void globalThis.crypto.getRandomValues(target))
  let pool = new Uint8Array(poolBytes)
  let offset = poolBytes
  return {
    bytes(n: number): Uint8Array {
      if (n > poolBytes) {
        const out = new Uint8Array(n)
        for (let i = 0; i < n; i += 65536) fill(out.subarray(i, Math.min(n, i + 65536)))
        return out
      }
      if (offset + n > poolBytes) {
        // A fresh buffer, not a refill in place: slices already handed out must not change.
        pool = new Uint8Array(poolBytes)
        fill(pool)
        offset = 0
      }
      const out = pool.subarray(offset, offset + n)
      offset += n
      return out
    },
  }
}

/** Reads unsigned 32-bit integers out of a byte slice, for drawing many small values at once. */
export function readUint32(bytes: Uint8Array, index: number): number {
  const i = index * 4
  return ((bytes[i]! << 24) | (bytes[i + 1]! << 16) | (bytes[i + 2]! << 8) | bytes[i + 3]!) >>> 0
}

/** Integer in [0, n) from a 32-bit draw; for the small n used here the bias (< n / 2^32) is negligible. */
export function below(draw: number, n: number): number {
  return Math.floor((draw / 4294967296) * n)
}
