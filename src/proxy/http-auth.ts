/**
 * The authenticator front for node:http: reads the `connectionId` header, asks the core
 * authenticator, and writes the 401 / 503 answers PROTOCOL.md and the docs promise. The
 * reverse proxy, forward auth and the framework middleware all go through here or through
 * `verdictFor`, so every front answers alike.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { CONNECTION_ID_HEADER, type AccessDecision } from '../core/access.ts'
import type { Authenticator } from '../core/authenticator.ts'
import { isWsdsError } from '../core/errors.ts'

export const UNAUTHORIZED_BODY = '{"error":"unauthorized"}'
export const STORE_UNAVAILABLE_BODY = '{"error":"store-unavailable"}'

export type Verdict =
  | { status: 200; decision: Extract<AccessDecision, { admit: true }> }
  | { status: 401; decision: Extract<AccessDecision, { admit: false }> }
  | { status: 503 }

export function connectionIdOf(req: IncomingMessage): string | undefined {
  const value = req.headers[CONNECTION_ID_HEADER]
  return Array.isArray(value) ? value[0] : value
}

export async function verdictFor(auth: Authenticator, req: IncomingMessage): Promise<Verdict> {
  try {
    const decision = await auth.check({
      connectionId: connectionIdOf(req),
      method: req.method,
      path: req.url,
      remoteAddress: req.socket.remoteAddress,
    })
    return decision.admit ? { status: 200, decision } : { status: 401, decision }
  } catch (err) {
    // Fail closed: a store we cannot read admits nobody, and 503 tells the client to retry
    // rather than re-verify.
    if (isWsdsError(err, 'ERR_STORE_UNAVAILABLE')) return { status: 503 }
    throw err
  }
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

/** Writes the refusal for a non-200 verdict. */
export function sendRefusal(res: ServerResponse, verdict: Exclude<Verdict, { status: 200 }>): void {
  if (verdict.status === 503) sendJson(res, 503, STORE_UNAVAILABLE_BODY, { 'retry-after': '1' })
  else sendJson(res, 401, UNAUTHORIZED_BODY)
}
