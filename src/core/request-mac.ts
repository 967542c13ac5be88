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
import { compressBlock, initialState } from './sha256.ts'

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** Message schedule, reused by every compression. */
const w = new Int32Array(64)

/** Absorbs `bytes[0, length)` (a multiple of 64) into h. */
function absorb(h: Int32Array, bytes: Uint8Array, length: number): void {
  for (let off = 0; off < length; off += 64) {
    for (let i = 0, j = off; i < 16; i++, j += 4) w[i] = (bytes[j]! << 24) | (bytes[j + 1]! << 16) | (bytes[j + 2]! << 8) | bytes[j + 3]!
    compressBlock(h, w)
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
  const h = initialState()
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
    compressBlock(outer, w)
    return encode(outer)
  }
  return mac
}
