/**
 * CORS on node:http (the self-hosted /api proxy): a preflight is answered here, before
 * authorization (it carries no id); an actual request from an allowed origin gets its CORS
 * headers set on the response, whoever writes it (the refusal, the greeting, the upstream).
 * The rules are core's (src/core/cors.ts), shared with the AWS REST API.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createCorsPolicy } from '../core/cors.ts'

const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v)

/** Returns a hook: true when it answered the request (a preflight), false to go on. */
export function createCorsHook(origins: readonly string[]): (req: IncomingMessage, res: ServerResponse) => boolean {
  const policy = createCorsPolicy(origins)
  return (req, res) => {
    // Same-origin and server-to-server calls send no Origin: without one, a request that is
    // not a preflight gets nothing from the policy, so it is not asked (this runs per request).
    if (req.headers.origin === undefined && req.method !== 'OPTIONS') return false
    const answer = policy.decide({
      method: req.method ?? 'GET',
      origin: one(req.headers.origin),
      requestMethod: one(req.headers['access-control-request-method']),
      requestHeaders: one(req.headers['access-control-request-headers']),
    })
    if (answer.kind === 'none') return false
    if (answer.kind === 'headers') {
      for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value)
      return false
    }
    req.resume()
    res.writeHead(answer.status, { ...answer.headers, 'content-length': 0, 'cache-control': 'no-store' })
    res.end()
    return true
  }
}
