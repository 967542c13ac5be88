/**
 * CORS for the protected API, the same on every front (the self-hosted /api proxy through
 * src/proxy/cors.ts, the AWS REST API through src/aws/rest.ts). The SDK's `connectionId`
 * header (and `WSDS-Signature`, `X-WSDS-Service-Token`) makes every cross-origin call
 * preflighted, and browsers send no custom header on the preflight, so preflights are
 * answered here without an id. No credentials: the id travels in a header, never a cookie.
 */
import { createOriginPolicy } from './origin.ts'

/** Request headers a page may send: the WSDS headers and a JSON body's type. */
export const CORS_ALLOWED_HEADERS = ['connectionId', 'WSDS-Signature', 'X-WSDS-Service-Token', 'Content-Type']
export const CORS_ALLOWED_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']
/** Readable by the page: when to retry after a 429 or 503. */
export const CORS_EXPOSED_HEADERS = ['Retry-After']
/** How long a browser may reuse a preflight, s (Chromium caps it at 7200). */
export const CORS_MAX_AGE_SECONDS = 600

export type CorsAnswer =
  /** Not a CORS request, or one from an origin not on the list: no CORS headers. */
  | { kind: 'none' }
  /** An actual request from an allowed origin: add these headers to whatever answers it. */
  | { kind: 'headers'; headers: Record<string, string> }
  /** A preflight: answer it now with this status and these headers, no body. */
  | { kind: 'preflight'; status: number; headers: Record<string, string> }

export interface CorsRequest {
  method: string
  origin: string | undefined
  /** Access-Control-Request-Method: present only on a preflight. */
  requestMethod: string | undefined
  requestHeaders: string | undefined
}

export interface CorsPolicy {
  readonly origins: readonly string[]
  decide(request: CorsRequest): CorsAnswer
}

const lower = new Set(CORS_ALLOWED_HEADERS.map((h) => h.toLowerCase()))

export function createCorsPolicy(origins: readonly string[]): CorsPolicy {
  const policy = createOriginPolicy(origins)
  const base = (origin: string) => ({ 'access-control-allow-origin': origin, vary: 'Origin' })
  return {
    origins: policy.origins,
    decide({ method, origin, requestMethod, requestHeaders }) {
      const allowed = origin !== undefined && policy.check(origin) !== null
      if (method === 'OPTIONS' && requestMethod !== undefined) {
        // A preflight from elsewhere is refused plainly: no allow headers, the browser blocks the call.
        if (!allowed) return { kind: 'preflight', status: 403, headers: { vary: 'Origin' } }
        const asked = (requestHeaders ?? '').split(',').map((h) => h.trim().toLowerCase()).filter((h) => h !== '')
        const methodOk = CORS_ALLOWED_METHODS.includes(requestMethod.toUpperCase())
        if (!methodOk || asked.some((h) => !lower.has(h))) return { kind: 'preflight', status: 403, headers: { vary: 'Origin' } }
        return {
          kind: 'preflight',
          status: 204,
          headers: {
            ...base(origin),
            'access-control-allow-methods': CORS_ALLOWED_METHODS.join(', '),
            'access-control-allow-headers': CORS_ALLOWED_HEADERS.join(', '),
            'access-control-max-age': String(CORS_MAX_AGE_SECONDS),
          },
        }
      }
      if (!allowed) return { kind: 'none' }
      return { kind: 'headers', headers: { ...base(origin), 'access-control-expose-headers': CORS_EXPOSED_HEADERS.join(', ') } }
    },
  }
}
