/**
 * The authenticator front for node:http: reads what the front decides on from the request
 * and writes the refusal the front decided on. The reverse proxy and forward auth go through
 * here, so both read the request the same way.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  CONNECTION_ID_HEADER,
  FORWARDED_METHOD_HEADER,
  FORWARDED_URI_HEADER,
  SERVICE_TOKEN_HEADER,
  SIGNATURE_HEADER,
  type AccessRequest,
} from '../core/access.ts'
import type { Front, FrontDecision } from '../core/front.ts'
import { serviceTokenFrom } from '../core/policy.ts'

/** The first value of a header (a repeated header is never joined: `a, b` is no id). */
export function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}

export function connectionIdOf(req: IncomingMessage, header = CONNECTION_ID_HEADER): string | undefined {
  return headerOf(req, header)
}

/** `Authorization: Bearer <t>` or `X-WSDS-Service-Token: <t>` (PROTOCOL.md, "Policy rules"). */
export function serviceTokenOf(req: IncomingMessage): string | undefined {
  return serviceTokenFrom(headerOf(req, SERVICE_TOKEN_HEADER), headerOf(req, 'authorization'))
}

export function clientAddressOf(req: IncomingMessage, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const first = headerOf(req, 'x-forwarded-for')?.split(',')[0]?.trim()
    if (first) return first
  }
  return req.socket.remoteAddress
}

export interface AccessRequestOptions {
  /** Header that carries the id (default `connectionid`). */
  header?: string
  /**
   * Forward auth: the request to decide on is the proxy's original one, named by
   * `X-Forwarded-Method` and `X-Forwarded-Uri` (PROTOCOL.md, "Request binding").
   */
  forwarded?: boolean
  /** Believe `X-Forwarded-For` for the client address (WSDS_TRUST_PROXY). */
  trustProxy?: boolean
}

/** What the front decides on, read from a node:http request. */
export function accessRequestOf(req: IncomingMessage, options: AccessRequestOptions = {}): AccessRequest {
  const forwarded = options.forwarded === true
  return {
    connectionId: connectionIdOf(req, options.header),
    method: (forwarded ? headerOf(req, FORWARDED_METHOD_HEADER) : undefined) ?? req.method,
    target: (forwarded ? headerOf(req, FORWARDED_URI_HEADER) : undefined) ?? req.url,
    signature: headerOf(req, SIGNATURE_HEADER),
    serviceToken: serviceTokenOf(req),
    remoteAddress: clientAddressOf(req, options.trustProxy === true),
  }
}

export function decideRequest(front: Front, req: IncomingMessage, options?: AccessRequestOptions): Promise<FrontDecision> {
  return front.decide(accessRequestOf(req, options))
}

export function sendJson(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers,
  })
  res.end(body)
}

/** Writes the refusal of a decision that does not pass. */
export function sendRefusal(req: IncomingMessage, res: ServerResponse, decision: FrontDecision): void {
  // A request body we will not read must not be left half-sent on a keep-alive socket.
  req.resume()
  sendJson(res, decision.status, decision.body ?? '{}', decision.headers)
}
