/**
 * node:crypto implementations of the request-binding primitives core/binding.ts declares, for
 * every Node adapter (the ws gateway, the Lambda handlers, the /api proxy, forward auth and
 * the Node middleware). Synchronous, as `transition()` and the fronts' cached path need.
 */
import { createECDH, createHmac, createSecretKey, hkdfSync } from 'node:crypto'
import { BINDING_INFO, type Binder, type RequestMac, type RequestMacFactory } from '../core/binding.ts'
import { keyedRequestMac } from '../core/request-mac.ts'

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

/**
 * HMAC-SHA256 under one K_req for the Node fronts: the keyed pure-JS HMAC of
 * core/request-mac.ts (pad midstates computed once per connection). Measured per request it
 * costs less than `createHmac` (an Hmac object, a KeyObject lookup and two native calls per
 * request), and it leaves no garbage (docs/benchmarks.md, "Request binding").
 */
export const nodeRequestMac: RequestMacFactory = keyedRequestMac

/** node:crypto's HMAC-SHA256 under one K_req (the KeyObject built once): the reference the tests hold the keyed one to. */
export const nodeCryptoRequestMac: RequestMacFactory = (requestKey) => {
  const key = createSecretKey(requestKey)
  const mac: RequestMac = (data) => createHmac('sha256', key).update(data).digest('base64url')
  return mac
}
