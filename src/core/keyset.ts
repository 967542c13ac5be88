import { WsdsError } from './errors.ts'
import { fromBase64Url, toBase64Url } from './encoding.ts'
import type { RandomSource } from './random.ts'

/** PROTOCOL.md "Key set file". */
export interface KeySet {
  id: string
  keys: readonly string[]
}

export const MIN_KEYS = 16
export const MIN_KEY_BYTES = 16
const ID_RE = /^[A-Za-z0-9._-]{1,64}$/

/**
 * Validates a parsed key set file and returns it frozen. Throws `ERR_KEYSET` naming what is
 * wrong, so a bad deployment fails at start rather than on the first handshake.
 */
export function parseKeySet(value: unknown, source = 'key set'): KeySet {
  const bad = (why: string): never => {
    throw new WsdsError('ERR_KEYSET', `${source}: ${why}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('must be a JSON object')
  const obj = value as Record<string, unknown>
  if (typeof obj.id !== 'string' || !ID_RE.test(obj.id)) bad('"id" must be 1-64 characters of [A-Za-z0-9._-]')
  if (!Array.isArray(obj.keys)) bad('"keys" must be an array of strings')
  const keys = obj.keys as unknown[]
  if (keys.length < MIN_KEYS) bad(`"keys" needs at least ${MIN_KEYS} keys, has ${keys.length}`)
  keys.forEach((key, i) => {
    if (typeof key !== 'string') return bad(`keys[${i}] is not a string`)
    const bytes = fromBase64Url(key)
    if (bytes === null) return bad(`keys[${i}] is not base64url`)
    if (bytes.length < MIN_KEY_BYTES) bad(`keys[${i}] has ${bytes.length} bytes, needs at least ${MIN_KEY_BYTES}`)
  })
  if (new Set(keys).size !== keys.length) bad('"keys" has duplicates')
  return Object.freeze({ id: obj.id as string, keys: Object.freeze([...(keys as string[])]) })
}

export interface GenerateKeySetOptions {
  /** Number of keys (default 32, at least 16). */
  count?: number
  /** Key set id (default: `ks-` and 8 random base64url characters). */
  id?: string
  /** Bytes per key (default 24). */
  keyBytes?: number
}

export function generateKeySet(random: RandomSource, options: GenerateKeySetOptions = {}): KeySet {
  const count = options.count ?? 32
  const keyBytes = options.keyBytes ?? 24
  if (!Number.isInteger(count) || count < MIN_KEYS || count > 4096) {
    throw new WsdsError('ERR_CONFIG', `count must be an integer in [${MIN_KEYS}, 4096], got ${count}`)
  }
  if (!Number.isInteger(keyBytes) || keyBytes < MIN_KEY_BYTES || keyBytes > 256) {
    throw new WsdsError('ERR_CONFIG', `keyBytes must be an integer in [${MIN_KEY_BYTES}, 256], got ${keyBytes}`)
  }
  const id = options.id ?? `ks-${toBase64Url(random.bytes(6))}`
  const keys = Array.from({ length: count }, () => toBase64Url(random.bytes(keyBytes)))
  return parseKeySet({ id, keys })
}
