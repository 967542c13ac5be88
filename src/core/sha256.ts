/**
 * SHA-256 (FIPS 180-4) in plain JavaScript, the one implementation the project has: the
 * SDK's proof of work (src/client/pow.ts) hashes with it, because pages on plain http (other
 * than localhost) have no `crypto.subtle` (PROTOCOL.md, Sequence 5) and `subtle.digest` is a
 * promise per hash, far too slow for a search of 2^16 hashes anyway; and the HMAC of
 * request binding (./request-mac.ts). Pure, so the SDK may
 * import it (test/core-boundary.test.ts). Checked against node:crypto in test/pow.test.ts
 * and test/core-binding.test.ts.
 */

// Round constants and initial state: the first 32 bits of the fractional parts of the cube
// (K) and square (H) roots of the first 64 (8) primes. Computed rather than listed, which
// keeps the SDK small; doubles are exact enough for these 32 bits (the tests prove it).
const K = new Int32Array(64)
const H0 = new Int32Array(8)
for (let n = 2, i = 0; i < 64; n++) {
  let prime = true
  for (let d = 2; d * d <= n; d++) if (n % d === 0) prime = false
  if (!prime) continue
  if (i < 8) H0[i] = ((n ** 0.5 % 1) * 2 ** 32) | 0
  K[i++] = ((n ** (1 / 3) % 1) * 2 ** 32) | 0
}

// Buffers reused by every call: a search of 2^16 hashes allocates nothing per hash.
const W = new Int32Array(64)
const H = new Int32Array(8)
let M = new Int32Array(16)
const ror = (x: number, n: number): number => (x >>> n) | (x << (32 - n))

/**
 * Readies M for a message of `len` bytes: zeroed, with the padding in place (FIPS 180-4,
 * 5.1.1): 0x80, zeros, the length in bits as a 64-bit big-endian number. Returns the padded
 * length in words; the caller then ORs the bytes into M, big-endian within each word.
 */
function pad(len: number): number {
  const words = ((len + 72) >> 6) * 16
  if (M.length < words) M = new Int32Array(words)
  M.fill(0, 0, words)
  M[len >> 2]! |= 0x80 << (24 - (len & 3) * 8)
  M[words - 2] = (len / 2 ** 29) | 0
  M[words - 1] = len << 3
  return words
}

/**
 * One SHA-256 compression (FIPS 180-4, 6.2.2) of the block in w[0..15] into the state h. `w`
 * holds 64 words: the message schedule is written over its tail. Also the building block of
 * the request-binding HMAC (./request-mac.ts), which keeps its pad states between calls.
 */
export function compressBlock(h: Int32Array, w: Int32Array): void {
  // Two loops: one merged loop would read w at negative indices, V8's slow path.
  for (let t = 16; t < 64; t++) {
    const x = w[t - 15]!
    const y = w[t - 2]!
    w[t] = ((ror(x, 7) ^ ror(x, 18) ^ (x >>> 3)) + w[t - 7]! + (ror(y, 17) ^ ror(y, 19) ^ (y >>> 10)) + w[t - 16]!) | 0
  }
  let a = h[0]!, bb = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, hh = h[7]!
  for (let t = 0; t < 64; t++) {
    const t1 = (hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[t]! + w[t]!) | 0
    const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c))) | 0
    hh = g
    g = f
    f = e
    e = (d + t1) | 0
    d = c
    c = bb
    bb = a
    a = (t1 + t2) | 0
  }
  // Int32Array stores wrap mod 2^32, so += is the 32-bit addition.
  h[0]! += a
  h[1]! += bb
  h[2]! += c
  h[3]! += d
  h[4]! += e
  h[5]! += f
  h[6]! += g
  h[7]! += hh
}

/** The initial state words (a copy). */
export const initialState = (): Int32Array => new Int32Array(H0)

/** Runs the compression function over the first `words` of M; returns the (reused) state words. */
function compress(words: number): Int32Array {
  const h = H
  h.set(H0)
  for (let b = 0; b < words; b += 16) {
    W.set(M.subarray(b, b + 16))
    compressBlock(h, W)
  }
  return h
}

/**
 * SHA-256 of `text`, one byte per UTF-16 code unit (masked with `mask`), as the eight state
 * words (big-endian). The returned array is reused by the next call.
 */
export function digestWords(text: string, mask = 255): Int32Array {
  const len = text.length
  const words = pad(len)
  const m = M
  for (let i = 0; i < len; i++) m[i >> 2]! |= (text.charCodeAt(i) & mask) << (24 - (i & 3) * 8)
  return compress(words)
}

/** SHA-256 of `data`, a new array. */
export function sha256(data: Uint8Array): Uint8Array {
  const len = data.length
  const words = pad(len)
  const m = M
  for (let i = 0; i < len; i++) m[i >> 2]! |= data[i]! << (24 - (i & 3) * 8)
  const h = compress(words)
  const out = new Uint8Array(32)
  for (let i = 0; i < 32; i++) out[i] = h[i >> 2]! >>> (24 - (i & 3) * 8)
  return out
}
