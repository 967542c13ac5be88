/**
 * HMAC-SHA256 for request signatures (PROTOCOL.md, "Request binding"), keyed once per
 * connection: the SHA-256 states after the key's inner and outer pad blocks are computed when
 * the key is first used, so each request costs only the compressions of its own signing
 * string (two for a typical string of 56 to 119 bytes) and one for the outer hash. Buffers are
 * reused between calls (a call runs to completion: nothing here is asynchronous).
 *
 * Pure JavaScript, so every front (node:http, framework middleware, edge runtimes) can check a
 * signature synchronously. On Node it also costs less than `createHmac` per request: creating
 * the Hmac object and crossing into native code cost more than these three compressions
 * (docs/benchmarks.md, "Request binding").
 */
import type { RequestMac, RequestMacFactory } from './binding.ts'

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
  0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
  0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
  0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
  0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
])
const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19])
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** Message schedule, reused by every compression. */
const w = new Int32Array(64)

/** One SHA-256 compression of the block in w[0..15] into state h (FIPS 180-4, 6.2.2). */
function compress(h: Int32Array): void {
  for (let i = 16; i < 64; i++) {
    const a = w[i - 15]!
    const b = w[i - 2]!
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3)
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10)
    w[i] = (w[i - 16]! + s0 + w[i - 7]! + s1) | 0
  }
  let a = h[0]!
  let b = h[1]!
  let c = h[2]!
  let d = h[3]!
  let e = h[4]!
  let f = h[5]!
  let g = h[6]!
  let hh = h[7]!
  for (let i = 0; i < 64; i++) {
    const t1 = (hh + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + ((e & f) ^ (~e & g)) + K[i]! + w[i]!) | 0
    const t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) ^ (a & c) ^ (b & c))) | 0
    hh = g
    g = f
    f = e
    e = (d + t1) | 0
    d = c
    c = b
    b = a
    a = (t1 + t2) | 0
  }
  h[0] = (h[0]! + a) | 0
  h[1] = (h[1]! + b) | 0
  h[2] = (h[2]! + c) | 0
  h[3] = (h[3]! + d) | 0
  h[4] = (h[4]! + e) | 0
  h[5] = (h[5]! + f) | 0
  h[6] = (h[6]! + g) | 0
  h[7] = (h[7]! + hh) | 0
}

/** Absorbs `bytes[0, length)` (a multiple of 64) into h. */
function absorb(h: Int32Array, bytes: Uint8Array, length: number): void {
  for (let off = 0; off < length; off += 64) {
    for (let i = 0, j = off; i < 16; i++, j += 4) w[i] = (bytes[j]! << 24) | (bytes[j + 1]! << 16) | (bytes[j + 2]! << 8) | bytes[j + 3]!
    compress(h)
  }
}

const encoder = new TextEncoder()
/** The message and its padding; grows (to a multiple of 64) for longer messages. */
let scratch = new Uint8Array(256)
const inner = new Int32Array(8)
const outer = new Int32Array(8)
const chars: number[] = new Array<number>(43).fill(0)

/**
 * Writes `data` as UTF-8 followed by SHA-256 padding for a message that starts after one
 * 64-byte block (the pad block already in the midstate); returns the padded length.
 */
function pad(data: string): number {
  const n = data.length
  let ascii = true
  if (scratch.length < n + 72) scratch = new Uint8Array((((n + 72) >> 6) + 1) << 6)
  for (let i = 0; i < n; i++) {
    const c = data.charCodeAt(i)
    if (c > 0x7f) {
      ascii = false
      break
    }
    scratch[i] = c
  }
  let length = n
  if (!ascii) {
    // Signing strings are ASCII in practice (a target's non-ASCII bytes are percent-encoded,
    // core/target.ts); anything else is hashed exactly as its UTF-8 bytes.
    const bytes = encoder.encode(data)
    if (scratch.length < bytes.length + 72) scratch = new Uint8Array((((bytes.length + 72) >> 6) + 1) << 6)
    scratch.set(bytes)
    length = bytes.length
  }
  const total = ((length + 9 + 63) >> 6) << 6
  scratch[length] = 0x80
  scratch.fill(0, length + 1, total - 4)
  // Bit length of pad block + message; signing strings are far below 2^29 bytes.
  const bits = (64 + length) * 8
  scratch[total - 4] = bits >>> 24
  scratch[total - 3] = (bits >>> 16) & 0xff
  scratch[total - 2] = (bits >>> 8) & 0xff
  scratch[total - 1] = bits & 0xff
  return total
}

/** The state after one block of `key` (at most 64 bytes) XOR `byte`, zero-padded. */
function midstate(key: Uint8Array, byte: number): Int32Array {
  const h = new Int32Array(IV)
  const block = new Uint8Array(64)
  for (let i = 0; i < 64; i++) block[i] = (key[i] ?? 0) ^ byte
  absorb(h, block, 64)
  return h
}

/** base64url (unpadded) of the 32 bytes in h, big-endian words. */
function encode(h: Int32Array): string {
  let k = 0
  let bits = 0
  let acc = 0
  for (let i = 0; i < 8; i++) {
    const v = h[i]!
    for (let s = 24; s >= 0; s -= 8) {
      acc = (acc << 8) | ((v >>> s) & 0xff)
      bits += 8
      while (bits >= 6) {
        bits -= 6
        chars[k++] = B64URL.charCodeAt((acc >>> bits) & 0x3f)
      }
      acc &= (1 << bits) - 1
    }
  }
  chars[k] = B64URL.charCodeAt((acc << (6 - bits)) & 0x3f)
  return String.fromCharCode.apply(null, chars)
}

/** HMAC-SHA256 under one K_req (at most 64 bytes; K_req is 32), as unpadded base64url. */
export const keyedRequestMac: RequestMacFactory = (requestKey) => {
  if (requestKey.length > 64) throw new RangeError('request keys longer than 64 bytes are not used by WSDS')
  const innerMid = midstate(requestKey, 0x36)
  const outerMid = midstate(requestKey, 0x5c)
  const mac: RequestMac = (data) => {
    const total = pad(data)
    inner.set(innerMid)
    absorb(inner, scratch, total)
    outer.set(outerMid)
    for (let i = 0; i < 8; i++) w[i] = inner[i]!
    w[8] = 0x80000000 | 0
    for (let i = 9; i < 15; i++) w[i] = 0
    w[15] = (64 + 32) * 8
    compress(outer)
    return encode(outer)
  }
  return mac
}
