/**
 * Request binding in the SDK (PROTOCOL.md, "Request binding"): a fresh ECDH P-256 pair per
 * connection offered in `hello`, K_req derived from the gateway's key on `verified`, and the
 * `WSDS-Signature` header for each REST call. The private key and K_req are non-extractable
 * WebCrypto keys: page script cannot read them out.
 */
import type { HelloMessage } from '../core/protocol.ts'

/** Puts the binding offer in `hello`; resolves with the key pair, kept for `verified`. */
export async function offerBinding(subtle: SubtleCrypto, hello: HelloMessage): Promise<CryptoKeyPair> {
  const keyPair = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits'])
  hello.bind = { alg: 'ECDH-P256', key: b64url(await subtle.exportKey('raw', keyPair.publicKey)) }
  return keyPair
}

/** K_req = HKDF-SHA256(Z, salt = connectionId, info = "wsds/1 request binding"), as an HMAC key. */
export async function deriveRequestKey(subtle: SubtleCrypto, privateKey: CryptoKey, serverKey: string, id: string): Promise<CryptoKey> {
  const peer = await subtle.importKey('raw', fromB64url(serverKey), { name: 'ECDH', namedCurve: 'P-256' }, false, [])
  const z = await subtle.deriveBits({ name: 'ECDH', public: peer }, privateKey, 256)
  const ikm = await subtle.importKey('raw', z, 'HKDF', false, ['deriveKey'])
  return subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: utf8(id), info: utf8('wsds/1 request binding') },
    ikm,
    { name: 'HMAC', hash: 'SHA-256', length: 256 },
    false,
    ['sign'],
  )
}

/**
 * The `WSDS-Signature` value, `t=<T>, s=<S>`: T = `now` (ms), S = HMAC(K_req, "wsds/1\n" T
 * "\n" METHOD "\n" TARGET "\n" connectionId) in base64url (PROTOCOL.md, "Request binding").
 * `url` resolves against the page; TARGET is origin-form as fetch sends it (the URL parser's
 * percent-encoding, a bare `?` kept, no fragment), and METHOD is upper-cased only where fetch
 * does (Fetch standard, "normalize a method").
 */
export async function signRequest(subtle: SubtleCrypto, key: CryptoKey, id: string, method: string, url: string | URL, now: number): Promise<string> {
  const u = new URL(url, (globalThis as { location?: { href?: string } }).location?.href)
  u.hash = ''
  const target = u.href.slice(u.href.indexOf('/', u.protocol.length + 2))
  const m = /^(delete|get|head|options|post|put)$/i.test(method) ? method.toUpperCase() : method
  const mac = await subtle.sign('HMAC', key, utf8(`wsds/1\n${now}\n${m}\n${target}\n${id}`))
  return `t=${now}, s=${b64url(mac)}`
}

const utf8 = (text: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(text)

// base64 <-> base64url, unpadded: '+/' <-> '-_'
const b64url = (bytes: ArrayBuffer): string =>
  btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/[+/=]/g, (c) => '-_'['+/'.indexOf(c)] ?? '')
const fromB64url = (text: string): Uint8Array<ArrayBuffer> =>
  Uint8Array.from(atob(text.replace(/[-_]/g, (c) => '+/'['-_'.indexOf(c)]!)), (c) => c.charCodeAt(0))
