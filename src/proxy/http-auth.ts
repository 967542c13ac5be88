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

/**
 * What the front decides on, read from a node:http request. The id, method, target and
 * signature are read at once (every bound request needs them); the service token and client
 * address only when something asks (policy rules do, a cached admission does not).
 */
class NodeAccessRequest implements AccessRequest {
  readonly connectionId: string | undefined
  readonly method: string | undefined
  readonly target: string | undefined
  readonly signature: string | undefined
  readonly #req: IncomingMessage
  readonly #trustProxy: boolean
  #serviceToken: string | undefined | null = null
  #remoteAddress: string | undefined | null = null

  constructor(req: IncomingMessage, header: string, forwarded: boolean, trustProxy: boolean) {
    this.#req = req
    this.#trustProxy = trustProxy
    this.connectionId = headerOf(req, header)
    this.method = (forwarded ? headerOf(req, FORWARDED_METHOD_HEADER) : undefined) ?? req.method
    this.target = (forwarded ? headerOf(req, FORWARDED_URI_HEADER) : undefined) ?? req.url
    this.signature = headerOf(req, SIGNATURE_HEADER)
  }

  get serviceToken(): string | undefined {
    if (this.#serviceToken === null) this.#serviceToken = serviceTokenOf(this.#req)
    return this.#serviceToken
  }

  get remoteAddress(): string | undefined {
    if (this.#remoteAddress === null) this.#remoteAddress = clientAddressOf(this.#req, this.#trustProxy)
    return this.#remoteAddress
  }

  /** The fields as plain data (what JSON.stringify and spreads would otherwise miss). */
  toJSON(): AccessRequest {
    return { connectionId: this.connectionId, method: this.method, target: this.target, signature: this.signature, serviceToken: this.serviceToken, remoteAddress: this.remoteAddress }
  }
}

export function accessRequestOf(req: IncomingMessage, options: AccessRequestOptions = {}): AccessRequest {
  return new NodeAccessRequest(req, options.header ?? CONNECTION_ID_HEADER, options.forwarded === true, options.trustProxy === true)
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
