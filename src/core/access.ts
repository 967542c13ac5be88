/**
 * The authenticator decision (PROTOCOL.md, Sequence 8 and Revocation): pure, from a record
 * and the time. Every front (reverse proxy, forward auth, middleware, Lambda authorizer)
 * calls this, so there is one definition of "admitted".
 */
import type { ConnectionRecord } from './store.ts'

export type DenyReason = 'missing' | 'malformed' | 'unknown' | 'pending' | 'lease-expired'

export type AccessDecision =
  | { admit: true; record: ConnectionRecord }
  | { admit: false; reason: DenyReason }

/**
 * What the authenticator sees of a request. Every front fills it the same way (for node:http:
 * `accessRequestOf` in proxy/http-auth.ts), so binding, policy rules and quotas see one shape.
 */
export interface AccessRequest {
  connectionId: string | undefined
  /** Request method as sent, upper case (behind forward auth: `X-Forwarded-Method`). */
  method?: string
  /**
   * Request-target in origin-form as the client sent it: path and query, percent-encoding
   * untouched (behind forward auth: `X-Forwarded-Uri`). Binding signs it; rules match its path.
   */
  target?: string
  /** The `WSDS-Signature` header (PROTOCOL.md, "Request binding"). */
  signature?: string
  /** A service token from `Authorization: Bearer <t>` or `X-WSDS-Service-Token` (policy rules). */
  serviceToken?: string
  /** Client address (from `X-Forwarded-For` only when the deployment trusts its proxy). */
  remoteAddress?: string
}

/** Request header names the fronts read (lower case, as node:http reports them). */
export const SIGNATURE_HEADER = 'wsds-signature'
export const SERVICE_TOKEN_HEADER = 'x-wsds-service-token'
export const FORWARDED_METHOD_HEADER = 'x-forwarded-method'
export const FORWARDED_URI_HEADER = 'x-forwarded-uri'

/** The `connectionId` header's name (PROTOCOL.md, Sequence 8); HTTP header names are case-insensitive. */
export const CONNECTION_ID_HEADER = 'connectionid'

// Ids we issue are 22 base64url characters; API Gateway's are base64 with '=' padding.
const ID_RE = /^[A-Za-z0-9_=+/-]{8,128}$/

/** Cheap shape check so garbage headers never reach the store. */
export function isPlausibleConnectionId(id: string | undefined): id is string {
  return id !== undefined && ID_RE.test(id)
}

export function decideAccess(request: AccessRequest, record: ConnectionRecord | null, now: number): AccessDecision {
  const id = request.connectionId
  if (id === undefined || id === '') return { admit: false, reason: 'missing' }
  if (!isPlausibleConnectionId(id)) return { admit: false, reason: 'malformed' }
  if (record === null || record.connectionId !== id) return { admit: false, reason: 'unknown' }
  if (record.expiresAt <= now) return { admit: false, reason: 'lease-expired' }
  if (record.status !== 'verified') return { admit: false, reason: 'pending' }
  return { admit: true, record }
}
