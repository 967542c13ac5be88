/**
 * Express 5 middleware (`wsds/express`): admits requests whose `connectionId` header names a
 * verified connection (PROTOCOL.md, Sequence 8), refusing others with the gateway proxy's
 * exact 401 / 503 answers. The decision is core/front.ts's; this file only reads the request
 * and writes the answer.
 *
 *   app.use('/api', wsds({ storeUrl: process.env.WSDS_STORE }))
 *   app.get('/api/me', (req, res) => res.json(req.wsds))
 */
import type { NextFunction, Request, Response } from 'express'
import { SIGNATURE_HEADER, type AccessRequest } from '../core/access.ts'
import { nodeRequestMac } from '../crypto/node-binding.ts'
import { connectionIdOf, headerOf, sendJson, sendRefusal } from '../proxy/http-auth.ts'
import {
  BAD_PATH_BODY,
  refusesTarget,
  serviceTokenOfHeaders,
  firstValue,
  connectionOf,
  createGuard,
  handleOf,
  labelNodeHeaders,
  type FrontDecision,
  type WsdsConnection,
  type WsdsHandle,
  type WsdsMiddlewareOptions,
} from './shared.ts'

export type { FrontDecision, Mode, Store, Verdict, WsdsConnection, WsdsHandle, WsdsMiddlewareOptions } from './shared.ts'

declare global {
  // Express's own way to type what middleware adds to `req` (@types/express-serve-static-core).
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The verified connection; undefined unless this request was admitted (PROTOCOL.md, Sequence 8). */
      wsds?: WsdsConnection | undefined
    }
  }
}

export interface WsdsExpressOptions extends WsdsMiddlewareOptions {
  /**
   * Answers a refusal yourself (enforce mode only). Send a response or return a value other
   * than undefined to skip the default 401/503 JSON; return nothing to keep it.
   */
  onReject?: (req: Request, res: Response, decision: FrontDecision) => unknown
}

export type WsdsExpressMiddleware = ((req: Request, res: Response, next: NextFunction) => void | Promise<void>) & WsdsHandle

/** Creates the middleware; throws `ERR_CONFIG` naming a bad option. */
export function wsds(options: WsdsExpressOptions): WsdsExpressMiddleware {
  const guard = createGuard(options, [], nodeRequestMac)
  const onReject = options.onReject
  // What binding signs: the method and the request-target as the client sent it (originalUrl,
  // before any mount path is stripped; PROTOCOL.md, "Request binding").
  const requestOf = (req: Request, connectionId: string | undefined): AccessRequest => ({
    connectionId,
    method: req.method,
    target: req.originalUrl,
    signature: headerOf(req, SIGNATURE_HEADER),
    remoteAddress: req.ip ?? req.socket.remoteAddress,
    serviceToken: serviceTokenOfHeaders((name) => firstValue(req.headers[name])),
  })

  const pass = (req: Request, decision: FrontDecision, next: NextFunction): void => {
    // x-wsds-* come only from us: a client must not hand the handler its own verdict or id.
    labelNodeHeaders(req.headers, decision.headers)
    req.wsds = connectionOf(decision)
    next()
  }

  async function decideAndAnswer(
    req: Request,
    res: Response,
    next: NextFunction,
    connectionId: string | undefined,
    decided?: FrontDecision,
  ): Promise<void> {
    let decision: FrontDecision
    try {
      // A refusal the cache already decided (a bad signature, the quota) is answered as is:
      // deciding again would count it twice.
      decision = decided ?? (await guard.decide(requestOf(req, connectionId)))
      if (!decision.pass) {
        if (onReject !== undefined) {
          const handled = await onReject(req, res, decision)
          if (handled !== undefined || res.headersSent) return
        }
        sendRefusal(req, res, decision)
        return
      }
    } catch (err) {
      next(err)
      return
    }
    pass(req, decision, next)
  }

  // A cached admission is answered without a promise: Express 5 would otherwise attach
  // handlers to the one an async middleware returns, on every request.
  function middleware(req: Request, res: Response, next: NextFunction): void | Promise<void> {
    if (refusesTarget(req.originalUrl)) {
      req.resume()
      return sendJson(res, 400, BAD_PATH_BODY)
    }
    const connectionId = connectionIdOf(req, guard.header)
    const cached = guard.decideCached(connectionId, req.headers[SIGNATURE_HEADER] !== undefined ? requestOf(req, connectionId) : undefined)
    if (cached?.pass === true) return pass(req, cached, next)
    return decideAndAnswer(req, res, next, connectionId, cached)
  }

  return Object.assign(middleware, handleOf(guard))
}
