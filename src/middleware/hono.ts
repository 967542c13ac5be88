/**
 * Hono 4 middleware (`wsds/hono`): admits requests whose `connectionId` header names a
 * verified connection (PROTOCOL.md, Sequence 8), refusing others with the gateway proxy's
 * exact 401 / 503 answers. The decision is core/front.ts's.
 *
 *   app.use('/api/*', wsds({ store }))
 *   app.get('/api/me', (c) => c.json(c.get('wsds')))
 *
 * Web APIs only (no node:* here or in what this imports statically), so it runs on any
 * runtime Hono runs on, with any `Store` the runtime can reach. `storeUrl` works on Node.
 */
import type { Context, MiddlewareHandler } from 'hono'
import { CONNECTION_ID_RESPONSE_HEADER, ORIGIN_RESPONSE_HEADER, VERDICT_HEADER } from '../core/front.ts'
import {
  connectionOf,
  createGuard,
  handleOf,
  refusalHeaders,
  type FrontDecision,
  type WsdsConnection,
  type WsdsHandle,
  type WsdsMiddlewareOptions,
} from './shared.ts'

export type { FrontDecision, Mode, Store, Verdict, WsdsConnection, WsdsHandle, WsdsMiddlewareOptions } from './shared.ts'

/** `c.get('wsds')`: the verified connection; undefined unless the request was admitted. */
export type WsdsVariables = { wsds: WsdsConnection | undefined }
/** `new Hono<WsdsEnv>()` types `c.get('wsds')`. */
export type WsdsEnv = { Variables: WsdsVariables }

export interface WsdsHonoOptions extends WsdsMiddlewareOptions {
  /**
   * Answers a refusal yourself (enforce mode only): return a Response to send it; return
   * nothing to keep the default 401/503 JSON.
   */
  onReject?: (c: Context, decision: FrontDecision) => Response | void | Promise<Response | void>
}

export type WsdsHonoMiddleware = MiddlewareHandler<WsdsEnv> & WsdsHandle

/** Path and query of an absolute URL, without parsing it. */
function pathOf(url: string): string {
  const slash = url.indexOf('/', url.indexOf('//') + 2)
  return slash === -1 ? '/' : url.slice(slash)
}

/** The headers the middleware sets; the only x-wsds-* a handler may trust. */
const OWN_HEADERS = [VERDICT_HEADER, CONNECTION_ID_RESPONSE_HEADER, ORIGIN_RESPONSE_HEADER] as const

function rewrite(headers: Headers, set: Record<string, string>): void {
  // Only our three names are cleared, not every x-wsds-*: scanning all keys of a Headers
  // object is what made this middleware slow, and no other x-wsds-* name means anything.
  for (const name of OWN_HEADERS) {
    const value = set[name]
    if (value === undefined) headers.delete(name)
    else headers.set(name, value)
  }
}

/** Creates the middleware; throws `ERR_CONFIG` naming a bad option. */
export function wsds(options: WsdsHonoOptions): WsdsHonoMiddleware {
  const guard = createGuard(options)
  const onReject = options.onReject

  const middleware: MiddlewareHandler<WsdsEnv> = async (c, next) => {
    const connectionId = c.req.header(guard.header)
    const decision = guard.decideCached(connectionId) ?? (await guard.decide({ connectionId, method: c.req.method, path: pathOf(c.req.url) }))
    if (decision.pass) {
      // x-wsds-* come only from us: a client must not hand the handler its own verdict or id.
      try {
        rewrite(c.req.raw.headers, decision.headers)
      } catch {
        // Runtimes whose incoming request headers are immutable (Workers, Deno): a copy of
        // the request carries the new ones.
        const headers = new Headers(c.req.raw.headers)
        rewrite(headers, decision.headers)
        c.req.raw = new Request(c.req.raw, { headers })
      }
      c.set('wsds', connectionOf(decision))
      await next()
      return
    }
    if (onReject !== undefined) {
      const answer = await onReject(c, decision)
      if (answer instanceof Response) return answer
    }
    return c.body(decision.body ?? '{}', decision.status as 401 | 503, refusalHeaders(decision))
  }

  return Object.assign(middleware, handleOf(guard))
}
