/**
 * The authenticator front for node:http: reads the `connectionId` header and writes the
 * refusal the front decided on. The reverse proxy and forward auth go through here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { CONNECTION_ID_HEADER } from '../core/access.ts'
import type { Front, FrontDecision } from '../core/front.ts'

export function connectionIdOf(req: IncomingMessage, header = CONNECTION_ID_HEADER): string | undefined {
  const value = req.headers[header]
  return Array.isArray(value) ? value[0] : value
}

export function decideRequest(front: Front, req: IncomingMessage, header?: string): Promise<FrontDecision> {
  return front.decide({
    connectionId: connectionIdOf(req, header),
    method: req.method,
    path: req.url,
    remoteAddress: req.socket.remoteAddress,
  })
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
