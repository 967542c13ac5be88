/**
 * Fastify 5 plugin (`wsds/fastify`): an `onRequest` hook that admits requests whose
 * `connectionId` header names a verified connection (PROTOCOL.md, Sequence 8), refusing
 * others with the gateway proxy's exact 401 / 503 answers. The decision is core/front.ts's.
 *
 *   await app.register(wsds, { storeUrl: process.env.WSDS_STORE })
 *   app.get('/api/me', async (request) => request.wsds)
 *
 * The hook applies to the scope the plugin is registered in (it skips Fastify's
 * encapsulation, as fastify-plugin does): register it inside a prefixed plugin to protect
 * only those routes. The store it opened is closed by `app.close()`.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { SIGNATURE_HEADER, type AccessRequest } from '../core/access.ts'
import { nodeRequestMac } from '../crypto/node-binding.ts'
import {
  BAD_PATH_BODY,
  BAD_PATH_HEADERS,
  refusesTarget,
  serviceTokenOfHeaders,
  connectionOf,
  createGuard,
  firstValue,
  handleOf,
  labelNodeHeaders,
  refusalHeaders,
  type FrontDecision,
  type WsdsConnection,
  type WsdsHandle,
  type WsdsMiddlewareOptions,
} from './shared.ts'

export type { FrontDecision, Mode, Store, Verdict, WsdsConnection, WsdsHandle, WsdsMiddlewareOptions } from './shared.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified connection; undefined unless this request was admitted (PROTOCOL.md, Sequence 8). */
    wsds: WsdsConnection | undefined
  }
  interface FastifyInstance {
    /** The plugin's decision counts, `ready()` and `close()` (also run by `app.close()`). */
    wsds: WsdsHandle
  }
}

export interface WsdsFastifyOptions extends WsdsMiddlewareOptions {
  /**
   * Answers a refusal yourself (enforce mode only). Send the reply or return a value other
   * than undefined (`return reply.code(403).send(...)`) to skip the default 401/503 JSON.
   */
  onReject?: (request: FastifyRequest, reply: FastifyReply, decision: FrontDecision) => unknown
}

// Options Fastify's `register` itself understands; they reach the plugin too.
const REGISTER_OPTIONS = ['prefix', 'logLevel', 'logSerializers']

async function plugin(app: FastifyInstance, options: WsdsFastifyOptions): Promise<void> {
  const guard = createGuard(options, REGISTER_OPTIONS, nodeRequestMac)
  // request.url is the request-target as sent, whatever prefix the plugin is registered under.
  const requestOf = (request: FastifyRequest, connectionId: string | undefined): AccessRequest => ({
    connectionId,
    method: request.method,
    target: request.url,
    signature: firstValue(request.headers[SIGNATURE_HEADER]),
    remoteAddress: request.ip,
    serviceToken: serviceTokenOfHeaders((name) => firstValue(request.headers[name])),
  })
  const onReject = options.onReject
  app.addHook('onClose', () => guard.close())
  if (!app.hasRequestDecorator('wsds')) app.decorateRequest('wsds', undefined)
  app.decorate('wsds', handleOf(guard))

  const pass = (request: FastifyRequest, decision: FrontDecision): void => {
    // Node's header object itself, which `request.headers` returns: x-wsds-* come only
    // from us, a client must not hand the handler its own verdict or id.
    labelNodeHeaders(request.raw.headers, decision.headers)
    request.wsds = connectionOf(decision)
  }

  const decideAndAnswer = async (
    request: FastifyRequest,
    reply: FastifyReply,
    connectionId: string | undefined,
    decided?: FrontDecision,
  ): Promise<unknown> => {
    // A refusal the cache already decided (a bad signature, the quota) is not decided twice.
    const decision = decided ?? (await guard.decide(requestOf(request, connectionId)))
    if (decision.pass) return pass(request, decision)
    if (onReject !== undefined) {
      const handled = await onReject(request, reply, decision)
      if (handled !== undefined || reply.sent) return reply
    }
    return reply.code(decision.status).headers(refusalHeaders(decision)).send(decision.body)
  }

  // Callback style, so a cached admission goes on without a promise (an async hook costs
  // Fastify a promise and its resolution on every request); anything else is async.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => {
    if (refusesTarget(request.raw.url)) {
      void reply.code(400).headers(BAD_PATH_HEADERS).send(BAD_PATH_BODY)
      return
    }
    const connectionId = firstValue(request.headers[guard.header])
    const cached = guard.decideCached(connectionId, request.headers[SIGNATURE_HEADER] !== undefined ? requestOf(request, connectionId) : undefined)
    if (cached?.pass === true) {
      pass(request, cached)
      done()
      return
    }
    decideAndAnswer(request, reply, connectionId, cached).then(
      (answered) => {
        if (answered !== reply) done()
      },
      (err: Error) => done(err),
    )
  })
  // Waiting here makes `app.ready()` / `listen()` wait for the store (at most 5 s for Redis).
  await guard.ready()
}

// What fastify-plugin sets: the hook and decorators belong to the registering scope.
Object.assign(plugin, { [Symbol.for('skip-override')]: true, [Symbol.for('fastify.display-name')]: 'wsds' })

/** The plugin; `app.register(wsds, options)` throws `ERR_CONFIG` naming a bad option. */
export const wsds: FastifyPluginAsync<WsdsFastifyOptions> = plugin
