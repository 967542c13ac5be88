/**
 * node:crypto implementations of the request-binding primitives core/binding.ts declares, for
 * every Node adapter (the ws gateway, the Lambda handlers, the /api proxy, forward auth and
 * the Node middleware). Synchronous, as `transition()` and the fronts' cached path need.
 */
import { createECDH, createHmac, createSecretKey, hkdfSync } from 'node:crypto'
import { BINDING_INFO, type Binder, type RequestMac, type RequestMacFactory } from '../core/binding.ts'

/**
 * ECDH P-256 with a fresh key pair per connection, then HKDF-SHA256 (PROTOCOL.md, "Request
 * binding"). OpenSSL checks that the client's point is on the curve (core has checked it too).
 */
export function createNodeBinder(): Binder {
  return (clientKey, connectionId) => {
    const ecdh = createECDH('prime256v1')
    const serverKey = ecdh.generateKeys()
    let z: Buffer
    try {
      z = ecdh.computeSecret(Buffer.from(clientKey, 'base64url'))
    } catch {
      return null
    }
    const requestKey = Buffer.from(hkdfSync('sha256', z, connectionId, BINDING_INFO, 32))
    return { serverKey: serverKey.toString('base64url'), requestKey: requestKey.toString('base64url') }
  }
}

/** HMAC-SHA256 under one K_req; the KeyObject is built once per connection, not per request. */
export const nodeRequestMac: RequestMacFactory = (requestKey) => {
  const key = createSecretKey(requestKey)
  const mac: RequestMac = (data) => createHmac('sha256', key).update(data).digest('base64url')
  return mac
}
