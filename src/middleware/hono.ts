/**
 * Hono 4 middleware (`wsds/hono`): admits requests whose `connectionId` header names a
 * verified connection (PROTOCOL.md, Sequence 8), refusing others with the gateway proxy's
 * exact 401 / 503 answers. The decision is core/front.ts's.
 *
 *   const guard = wsds({ store })
 *   app.use('/api/*', guard)
 *   app.get('/api/me', (c) => c.json(c.get('wsds')))
 *   app.get('/hot', guard.protect((c) => c.json(c.get('wsds'))))   // one route, no middleware
 *
 * Web APIs only (no node:* here or in what this imports statically), so it runs on any
 * runtime Hono runs on, with any `Store` the runtime can reach. `storeUrl` works on Node.
 */
import type { Context, Handler, Input, MiddlewareHandler, Next } from 'hono'
import type { BlankInput, HandlerResponse } from 'hono/types'
import { SIGNATURE_HEADER, type AccessRequest } from '../core/access.ts'
import {
  BAD_PATH_BODY,
  BAD_PATH_HEADERS,
  refusesTarget,
  serviceTokenOfHeaders,
  OWN_HEADERS,
  connectionOf,
  createGuard,
  firstValue,
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

export interface WsdsHonoMiddleware extends MiddlewareHandler<WsdsEnv>, WsdsHandle {
  /**
   * The same check for one route, as its only handler: `app.get(path, guard.protect(handler))`.
   * Hono runs a route with a single handler without its middleware chain, so a cached
   * admission costs no promise at all (on @hono/node-server, `app.use` with any middleware
   * costs about a tenth of a small route's throughput by itself).
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  protect<E extends WsdsEnv = WsdsEnv, P extends string = string, I extends Input = BlankInput, R extends HandlerResponse<any> = HandlerResponse<any>>(
    handler: Handler<E, P, I, R>,
  ): Handler<E, P, I, R | Response | Promise<Response>>
}

/** Path and query of an absolute URL, without parsing it. */
function targetOf(url: string): string {
  const slash = url.indexOf('/', url.indexOf('//') + 2)
  return slash === -1 ? '/' : url.slice(slash)
}

function rewrite(headers: Headers, set: Readonly<Record<string, string>>): void {
  for (const name of OWN_HEADERS) {
    const value = set[name]
    if (value === undefined) headers.delete(name)
    else headers.set(name, value)
  }
}

/** Sets (or, with an empty `set`, removes) our request headers, on a copy where they are immutable. */
function label(c: Context, set: Readonly<Record<string, string>>): void {
  try {
    rewrite(c.req.raw.headers, set)
  } catch {
    // Runtimes whose incoming request headers are immutable (Workers, Deno): a copy of
    // the request carries the new ones.
    const headers = new Headers(c.req.raw.headers)
    rewrite(headers, set)
    c.req.raw = new Request(c.req.raw, { headers })
  }
}

const NONE: Readonly<Record<string, string>> = Object.freeze({})

type NodeHeaders = Record<string, string | string[] | undefined>

/**
 * Node's own header object when the app runs on @hono/node-server (its documented
 * `HttpBindings`: `c.env.incoming` is the IncomingMessage), else undefined. Reading the id
 * there rather than through `c.req` spares a route that never touches `c.req` the
 * HonoRequest and lazy Headers that `c.req.header()` builds: about 2 us, a tenth of a
 * small route's throughput. It is the request as the client sent it, as Express and
 * Fastify see it.
 */
function nodeHeadersOf(c: Context): NodeHeaders | undefined {
  const incoming = (c.env as { incoming?: { headers?: unknown; rawHeaders?: unknown } } | undefined)?.incoming
  // rawHeaders too: on other runtimes c.env holds the app's own bindings, whatever their names.
  return incoming !== undefined && Array.isArray(incoming.rawHeaders) && typeof incoming.headers === 'object' && incoming.headers !== null
    ? (incoming.headers as NodeHeaders)
    : undefined
}

/** Whether the client sent any of our x-wsds-* names (read without building a Headers). */
function sentOwnHeader(c: Context, node: NodeHeaders | undefined): boolean {
  for (const name of OWN_HEADERS) if (node !== undefined ? node[name] !== undefined : c.req.raw.headers.has(name)) return true
  return false
}

/** Creates the middleware; throws `ERR_CONFIG` naming a bad option. */
export function wsds(options: WsdsHonoOptions): WsdsHonoMiddleware {
  const guard = createGuard(options)
  const onReject = options.onReject
  const monitor = guard.front.mode === 'monitor'

  /**
   * What a passing decision does to the request. The handler reads the connection from
   * `c.get('wsds')`. Request headers are written only in monitor mode, where the verdict
   * header is the point: on @hono/node-server any `set` or `delete` first copies every
   * header into a new `Headers` (about 6 us, a tenth of a small route's throughput). In
   * enforce mode a client's own x-wsds-* are still removed (that rare request pays the
   * copy), so a handler never sees a forged one.
   */
  const admit = (c: Context<WsdsEnv>, decision: FrontDecision, node: NodeHeaders | undefined): void => {
    c.set('wsds', connectionOf(decision))
    if (monitor) label(c, decision.headers)
    else if (sentOwnHeader(c, node)) label(c, NONE)
  }

  const signatureOf = (c: Context, node: NodeHeaders | undefined): string | undefined =>
    node !== undefined ? firstValue(node[SIGNATURE_HEADER]) : c.req.header(SIGNATURE_HEADER)
  // What binding signs: method and request-target as sent (PROTOCOL.md, "Request binding").
  const requestOf = (c: Context, node: NodeHeaders | undefined, connectionId: string | undefined): AccessRequest => ({
    connectionId,
    method: c.req.method,
    target: targetOf(c.req.url),
    signature: signatureOf(c, node),
    // Only @hono/node-server exposes the socket; elsewhere CIDR rules see no address and do not match.
    remoteAddress: (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket?.remoteAddress,
    serviceToken: serviceTokenOfHeaders((name) => (node !== undefined ? firstValue(node[name]) : c.req.header(name))),
  })
  /** The cached decision, if any; a bound id's request is read only when it is signed. */
  const cachedDecision = (c: Context, node: NodeHeaders | undefined, connectionId: string | undefined): FrontDecision | undefined => {
    const signed = signatureOf(c, node) !== undefined
    return guard.decideCached(connectionId, signed ? requestOf(c, node, connectionId) : undefined)
  }

  const idOf = (c: Context, node: NodeHeaders | undefined): string | undefined => (node !== undefined ? firstValue(node[guard.header]) : c.req.header(guard.header))

  /** The store read, then the handler or the refusal. */
  const decideThen = async <T>(
    c: Context<WsdsEnv>,
    node: NodeHeaders | undefined,
    connectionId: string | undefined,
    then: () => T,
    decided?: FrontDecision,
  ): Promise<Awaited<T> | Response | undefined> => {
    // A refusal the cache already decided (a bad signature, the quota) is not decided twice.
    const decision = decided ?? (await guard.decide(requestOf(c, node, connectionId)))
    if (decision.pass) {
      admit(c, decision, node)
      return await then()
    }
    if (onReject !== undefined) {
      const answer = await onReject(c, decision)
      if (answer instanceof Response) return answer
    }
    return c.body(decision.body ?? '{}', decision.status as 401 | 429 | 503, refusalHeaders(decision))
  }

  /** The target as the client sent it: Node's raw one when there is one (a Request's URL has its dot segments resolved already). */
  const refused = (c: Context): boolean => {
    const raw = (c.env as { incoming?: { url?: unknown } } | undefined)?.incoming?.url
    return refusesTarget(typeof raw === 'string' && raw.startsWith('/') ? raw : targetOf(c.req.url))
  }
  const badPath = (c: Context): Response => c.body(BAD_PATH_BODY, 400, BAD_PATH_HEADERS)

  // Not async: a cached admission returns next()'s own promise instead of wrapping it.
  const middleware: MiddlewareHandler<WsdsEnv> = (c, next) => {
    if (refused(c)) return Promise.resolve(badPath(c))
    const node = nodeHeadersOf(c)
    const connectionId = idOf(c, node)
    const cached = cachedDecision(c, node, connectionId)
    if (cached?.pass === true) {
      admit(c, cached, node)
      return next()
    }
    return decideThen(c, node, connectionId, next, cached) as Promise<Response | void>
  }

  const protect: WsdsHonoMiddleware['protect'] = (handler) => (c, next: Next) => {
    // Only `wsds` of the app's variables is touched here, whatever else its Env declares.
    const own = c as unknown as Context<WsdsEnv>
    if (refused(c)) return badPath(c)
    const node = nodeHeadersOf(c)
    const connectionId = idOf(c, node)
    const cached = cachedDecision(c, node, connectionId)
    if (cached?.pass === true) {
      admit(own, cached, node)
      return handler(c, next)
    }
    return decideThen(own, node, connectionId, () => handler(c, next), cached) as Promise<Response>
  }

  return Object.assign(middleware, handleOf(guard), { protect })
}
