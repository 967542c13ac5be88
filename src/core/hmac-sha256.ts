/**
 * HMAC-SHA256 (RFC 2104) over the project's one SHA-256 (./sha256.ts): the request-binding
 * MAC for fronts that must decide synchronously without node:crypto (the Hono middleware on
 * edge runtimes; WebCrypto's HMAC is async). Node fronts inject node:crypto's instead (crypto/node-binding.ts).
 */
import { toBase64Url } from './encoding.ts'
import type { RequestMacFactory } from './binding.ts'
import { sha256 } from './sha256.ts'

const encoder = new TextEncoder()

/** HMAC-SHA256 with a key of at most 64 bytes (K_req is 32). */
export const jsRequestMac: RequestMacFactory = (requestKey) => {
  const key = requestKey.length > 64 ? sha256(requestKey) : requestKey
  const inner = new Uint8Array(64)
  const outer = new Uint8Array(64)
  for (let i = 0; i < 64; i++) {
    inner[i] = (key[i] ?? 0) ^ 0x36
    outer[i] = (key[i] ?? 0) ^ 0x5c
  }
  return (data) => {
    const message = encoder.encode(data)
    const first = new Uint8Array(64 + message.length)
    first.set(inner)
    first.set(message, 64)
    const second = new Uint8Array(96)
    second.set(outer)
    second.set(sha256(first), 64)
    return toBase64Url(sha256(second))
  }
}
