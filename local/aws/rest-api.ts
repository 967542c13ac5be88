/**
 * A local REST API with a Lambda REQUEST authorizer, as API Gateway runs it: identity source
 * `method.request.header.connectionId` (a missing header is 401 without calling the
 * authorizer), the authorizer's result cached per identity value for the TTL (Allow and
 * Deny policies alike; a thrown `Unauthorized` is not cached), the policy checked against
 * the method ARN, and the stack's gateway responses: UNAUTHORIZED and ACCESS_DENIED -> 401
 * `{"error":"unauthorized"}`, AUTHORIZER_FAILURE -> 503 `{"error":"store-unavailable"}`.
 * Like API Gateway, the cache cannot drop one key: revocation waits for the TTL.
 *
 * With policy rules (`policyRules`, the stack synthesized with WSDS_POLICY_FILE): no identity
 * source and no cache, so every request reaches the authorizer, the id-less ones included;
 * ACCESS_DENIED (an explicit Deny, which only a `deny` rule returns then) is 403
 * `{"error":"forbidden"}`; the rule's name reaches the upstream as X-WSDS-Rule.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AuthorizerEvent, AuthorizerResult, ProxyEvent, ProxyResult } from '../../src/aws/events.ts'
import { UNAUTHORIZED } from '../../src/aws/rest.ts'
import { FORBIDDEN_BODY, STORE_UNAVAILABLE_BODY, UNAUTHORIZED_BODY } from '../../src/core/front.ts'
import { LOCAL_ACCOUNT, LOCAL_REGION } from './template.ts'

export interface RestApiOptions {
  authorizer: (event: AuthorizerEvent) => Promise<AuthorizerResult>
  /** Authorizer result cache TTL, seconds (0 = off); API Gateway's maximum is 3600. */
  cacheTtlSeconds: number
  /** The stack's configuration for policy rules (infra/stack.ts): no identity source, TTL 0, deny = 403. */
  policyRules?: boolean
  /** Path (after the mount prefix) -> Lambda proxy handler, GET only. */
  lambdas: Record<string, (event: ProxyEvent) => Promise<ProxyResult>>
  stage: string
  apiId?: string
  /**
   * HTTP proxy integration for every other path (what `WSDS_UPSTREAM` names), as an
   * `{proxy+}` resource with an HTTP_PROXY integration would do on API Gateway.
   */
  upstream?: (req: IncomingMessage, res: ServerResponse, headers: Record<string, string>) => void
  /**
   * OPTIONS with Access-Control-Request-Method, on any path, without the authorizer: the
   * stack's OPTIONS method on the greeting function (src/aws/rest.ts createGreeting).
   */
  preflight?: (event: ProxyEvent) => Promise<ProxyResult>
  /** CORS headers for proxied responses (the upstream's own answer); the greeting adds its own. */
  corsHeaders?: (origin: string | undefined) => Record<string, string>
}

export interface RestApiStats {
  requests: number
  authorizerInvocations: number
  cacheHits: number
  decisions: Record<string, number>
}

export interface RestApi {
  /** Serves `path` (already stripped of any mount prefix); `/wsds/auth` answers 204 for an Allow. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void>
  stats: RestApiStats
}


const matches = (pattern: string, arn: string) => new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$').test(arn)

export function createRestApi(options: RestApiOptions): RestApi {
  const apiId = options.apiId ?? 'localrest'
  const cache = new Map<string, { result: AuthorizerResult; until: number }>()
  const stats: RestApiStats = { requests: 0, authorizerInvocations: 0, cacheHits: 0, decisions: {} }
  const count = (d: string) => void (stats.decisions[d] = (stats.decisions[d] ?? 0) + 1)

  const sendRaw = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers })
    res.end(body)
  }

  return {
    stats,
    async handle(req, res, path) {
      stats.requests++
      const method = req.method ?? 'GET'
      const url = new URL(req.url ?? '/', 'http://x')
      const origin = typeof req.headers.origin === 'string' ? req.headers.origin : undefined
      if (method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined && options.preflight) {
        const headers: Record<string, string> = {}
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v
        const out = await options.preflight({ httpMethod: method, path, headers, queryStringParameters: null })
        res.writeHead(out.statusCode, { 'content-length': Buffer.byteLength(out.body), ...(out.headers ?? {}) })
        return void res.end(out.body)
      }
      // The stack's gateway responses echo the Origin, so a cross-origin page can read a refusal.
      const refusalCors: Record<string, string> = origin === undefined ? {} : { 'access-control-allow-origin': origin, vary: 'Origin' }
      const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) =>
        sendRaw(res, status, body, status === 401 || status === 403 || status === 503 ? { ...refusalCors, ...headers } : headers)
      const lambda = options.lambdas[path]
      const proxied = lambda === undefined && path !== '/wsds/auth' && options.upstream !== undefined
      if (path !== '/wsds/auth' && !lambda && !proxied) return send(res, 403, '{"message":"Missing Authentication Token"}')
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v
      const rules = options.policyRules === true
      const identity = rules ? '' : headers.connectionid
      if (!rules && (identity === undefined || identity === '')) {
        count('deny:missing')
        return send(res, 401, UNAUTHORIZED_BODY)
      }
      const methodArn = `arn:aws:execute-api:${LOCAL_REGION}:${LOCAL_ACCOUNT}:${apiId}/${options.stage}/${method}${path}`
      const now = Date.now()
      let result: AuthorizerResult
      const cacheTtlSeconds = rules ? 0 : options.cacheTtlSeconds
      const hit = cacheTtlSeconds > 0 ? cache.get(identity!) : undefined
      if (hit && hit.until > now) {
        stats.cacheHits++
        result = hit.result
      } else {
        stats.authorizerInvocations++
        try {
          const query = Object.fromEntries(url.searchParams)
          result = await options.authorizer({ type: 'REQUEST', methodArn, resource: path, path, httpMethod: method, headers, queryStringParameters: query, requestContext: { path: url.pathname, identity: { sourceIp: req.socket.remoteAddress ?? '' } } })
        } catch (err) {
          if ((err as Error).message === UNAUTHORIZED) {
            count('deny:unauthorized')
            return send(res, 401, UNAUTHORIZED_BODY)
          }
          count('deny:authorizer-failure')
          return send(res, 503, STORE_UNAVAILABLE_BODY, { 'retry-after': '1' })
        }
        if (cacheTtlSeconds > 0) cache.set(identity!, { result, until: now + cacheTtlSeconds * 1000 })
      }
      const statements = result.policyDocument.Statement
      const denied = statements.some((s) => s.Effect === 'Deny' && matches(s.Resource, methodArn))
      const allowed = !denied && statements.some((s) => s.Effect === 'Allow' && matches(s.Resource, methodArn))
      if (!allowed) {
        count('deny:policy')
        // The stack's ACCESS_DENIED gateway response: 403 forbidden with rules, else 401.
        return rules ? send(res, 403, FORBIDDEN_BODY) : send(res, 401, UNAUTHORIZED_BODY)
      }
      count('allow')
      const ctx = result.context ?? {}
      if (path === '/wsds/auth') {
        // The stack's mock integration: 204 with the authorizer context as headers.
        res.writeHead(204, { 'x-wsds-connection-id': ctx.connectionId ?? '', 'x-wsds-origin': ctx.origin ?? '', 'x-wsds-verdict': ctx.verdict ?? '', ...(rules ? { 'x-wsds-rule': ctx.rule ?? '' } : {}) })
        return void res.end()
      }
      if (proxied) {
        for (const [k, v] of Object.entries(options.corsHeaders?.(origin) ?? {})) res.setHeader(k, v)
        return options.upstream!(req, res, {
          'x-wsds-connection-id': ctx.connectionId ?? '',
          'x-wsds-origin': ctx.origin ?? '',
          'x-wsds-verdict': ctx.verdict ?? 'allow',
          ...(rules ? { 'x-wsds-rule': ctx.rule ?? '' } : {}),
        })
      }
      const out = await lambda!({ httpMethod: method, path, headers, queryStringParameters: url.searchParams.size ? Object.fromEntries(url.searchParams) : null, requestContext: { authorizer: { ...ctx, principalId: result.principalId } } })
      sendRaw(res, out.statusCode, out.body, out.headers ?? {})
    },
  }
}
