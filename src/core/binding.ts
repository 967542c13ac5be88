/**
 * Request binding (PROTOCOL.md, "Extensions" / "Request binding"): the offer in `hello`, the
 * string a request signs, the `WSDS-Signature` header and its check. Pure: the curve check is
 * plain BigInt arithmetic, and the ECDH / HKDF / HMAC primitives are injected by adapters
 * (node:crypto in the gateway and Lambda, WebCrypto in the SDK), so every front checks one
 * definition of a valid signature.
 */
import { constantTimeEqual, fromBase64Url, toBase64Url } from './encoding.ts'
import { WsdsError } from './errors.ts'

export type BindingMode = 'off' | 'optional' | 'required'
export const BINDING_ALG = 'ECDH-P256'
/** HKDF `info` of K_req (PROTOCOL.md). */
export const BINDING_INFO = 'wsds/1 request binding'
/** Default `WSDS_BINDING_WINDOW_MS`: how far a signature's `t` may be from the checker's clock. */
export const DEFAULT_BINDING_WINDOW_MS = 30_000
/** A longer header is refused unread: a real one is about 60 characters. */
const MAX_HEADER_LENGTH = 512
/** base64url length of a 65-byte uncompressed point and of a 32-byte MAC, unpadded. */
const POINT_B64_LENGTH = 87
const MAC_B64_LENGTH = 43

export function parseBindingMode(value: string): BindingMode {
  if (value === 'off' || value === 'optional' || value === 'required') return value
  throw new WsdsError('ERR_CONFIG', `binding mode must be off, optional or required, got ${JSON.stringify(value)}`)
}

// P-256 (SEC 2, secp256r1): y^2 = x^3 - 3x + b over GF(p).
const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn

const bigOf = (bytes: Uint8Array): bigint => {
  let n = 0n
  for (const byte of bytes) n = (n << 8n) | BigInt(byte)
  return n
}

/** Whether 65 bytes are an uncompressed P-256 point: 0x04, x and y below p, on the curve. */
export function isP256Point(raw: Uint8Array): boolean {
  if (raw.length !== 65 || raw[0] !== 0x04) return false
  const x = bigOf(raw.subarray(1, 33))
  const y = bigOf(raw.subarray(33, 65))
  if (x >= P || y >= P) return false
  return (y * y) % P === (((x * x) % P) * x - 3n * x + B + 3n * P) % P
}

/**
 * The client's public key from a `hello.bind`, as its base64url text, or null when the offer
 * is malformed (`bad-binding`): not an object, unknown `alg`, not canonical unpadded
 * base64url of 65 bytes, or not a point on the curve.
 */
export function parseBindOffer(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null
  const { alg, key } = value as { alg?: unknown; key?: unknown }
  if (alg !== BINDING_ALG || typeof key !== 'string' || key.length !== POINT_B64_LENGTH) return null
  const raw = fromBase64Url(key)
  // Re-encoding rejects non-zero trailing bits: one key has one spelling.
  if (raw === null || toBase64Url(raw) !== key || !isP256Point(raw)) return null
  return key
}

/** What deriving a connection's request key gives: both base64url, unpadded. */
export interface DerivedBinding {
  /** The gateway's ephemeral public key, 65-byte uncompressed point (`verified.bind.key`). */
  serverKey: string
  /** K_req, 32 bytes: stored with the record as `bindKey`. */
  requestKey: string
}

/**
 * ECDH P-256 + HKDF-SHA256 (PROTOCOL.md): a fresh server key pair, Z = the shared x-coordinate,
 * K_req = HKDF(IKM = Z, salt = UTF-8(connectionId), info = UTF-8(BINDING_INFO), L = 32).
 * Synchronous because `transition()` is; returns null when the adapter's crypto refuses the
 * client's key (it is then `bad-binding`).
 */
export type Binder = (clientKey: string, connectionId: string) => DerivedBinding | null

/** HMAC-SHA256 under one K_req, as unpadded base64url. Adapters build one per key and reuse it. */
export type RequestMac = (data: string) => string
export type RequestMacFactory = (requestKey: Uint8Array) => RequestMac

/** The string a request signs (PROTOCOL.md): "wsds/1\n" T "\n" METHOD "\n" TARGET "\n" connectionId. */
export function signingString(t: string, method: string, target: string, connectionId: string): string {
  return `wsds/1\n${t}\n${method}\n${target}\n${connectionId}`
}

/** `WSDS-Signature: t=<T>, s=<S>` formatted as the SDK sends it. */
export function formatSignatureHeader(t: number | string, s: string): string {
  return `t=${t}, s=${s}`
}

export interface ParsedSignature {
  /** `t` exactly as sent: the signed string uses this text. */
  t: string
  /** `t` as a number, epoch ms. */
  time: number
  s: string
}

const T_RE = /^\d{1,16}$/
const S_RE = /^[A-Za-z0-9_-]{43}$/

/**
 * Parses the header: comma-separated `k=v`, optional spaces around each, any order, unknown
 * keys ignored. A repeated `t` or `s`, or one missing or ill-formed, makes it malformed (null).
 */
export function parseSignatureHeader(value: string): ParsedSignature | null {
  if (value.length > MAX_HEADER_LENGTH) return null
  // Every request of a bound connection carries the header, almost always in the form the
  // SDK writes; reading that form directly spares the general parse its splits and trims.
  const exact = parseSdkForm(value)
  if (exact !== null) return exact
  let t: string | undefined
  let s: string | undefined
  for (const part of value.split(',')) {
    const eq = part.indexOf('=')
    if (eq === -1) {
      if (part.trim() === '') continue
      return null
    }
    const key = part.slice(0, eq).trim()
    const val = part.slice(eq + 1).trim()
    if (key === 't') {
      if (t !== undefined) return null
      t = val
    } else if (key === 's') {
      if (s !== undefined) return null
      s = val
    }
  }
  if (t === undefined || s === undefined || !T_RE.test(t) || s.length !== MAC_B64_LENGTH || !S_RE.test(s)) return null
  return { t, time: Number(t), s }
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39
const isBase64UrlChar = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || isDigit(c) || c === 0x2d || c === 0x5f

/**
 * `t=<1-16 digits>, s=<43 base64url characters>` exactly (formatSignatureHeader's output), or
 * null for anything else, which the general parser then reads: it gives the same result for
 * every string this accepts.
 */
function parseSdkForm(value: string): ParsedSignature | null {
  const n = value.length
  const sStart = n - MAC_B64_LENGTH
  const tEnd = sStart - 4
  if (tEnd < 3 || tEnd > 18 || value.charCodeAt(0) !== 0x74 /* t */ || value.charCodeAt(1) !== 0x3d /* = */) return null
  // ", s="
  if (value.charCodeAt(tEnd) !== 0x2c || value.charCodeAt(tEnd + 1) !== 0x20 || value.charCodeAt(tEnd + 2) !== 0x73 || value.charCodeAt(tEnd + 3) !== 0x3d) return null
  for (let i = 2; i < tEnd; i++) if (!isDigit(value.charCodeAt(i))) return null
  for (let i = sStart; i < n; i++) if (!isBase64UrlChar(value.charCodeAt(i))) return null
  const t = value.slice(2, tEnd)
  return { t, time: Number(t), s: value.slice(sStart) }
}

export type SignatureCheck = 'ok' | 'unsigned' | 'malformed' | 'stale' | 'bad-mac'

export interface SignedRequest {
  connectionId: string
  method: string | undefined
  target: string | undefined
  signature: string | undefined
}

/**
 * Checks a bound connection's request: header present and well formed, |now - t| within the
 * window, then the MAC in constant time. The MAC is computed last, so garbage costs no HMAC.
 */
export function checkRequestSignature(request: SignedRequest, mac: RequestMac, now: number, windowMs: number): SignatureCheck {
  const header = request.signature
  if (header === undefined || header === '') return 'unsigned'
  const parsed = parseSignatureHeader(header)
  if (parsed === null || request.method === undefined || request.target === undefined) return 'malformed'
  if (Math.abs(now - parsed.time) > windowMs) return 'stale'
  const expected = mac(signingString(parsed.t, request.method, request.target, request.connectionId))
  return constantTimeEqual(expected, parsed.s) ? 'ok' : 'bad-mac'
}
