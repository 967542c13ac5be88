/** The protected demo service: `GET /greeting?who=X` -> `{"greeting":"Hello, X!"}`. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

const MAX_WHO = 100

export function handleGreeting(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://x')
  const send = (status: number, body: unknown) => {
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
    res.end(text)
  }
  if (url.pathname !== '/greeting') return send(404, { error: 'not-found' })
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, { error: 'method-not-allowed' })
  const who = (url.searchParams.get('who') ?? '').slice(0, MAX_WHO) || 'World'
  send(200, { greeting: `Hello, ${who}!` })
}

/** Runs the greeting service on its own port, as a stand-in for a real upstream. */
export async function startGreetingServer(port = 0, host = '127.0.0.1'): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = createServer(handleGreeting)
  server.keepAliveTimeout = 65_000
  await new Promise<void>((resolve) => server.listen(port, host, resolve))
  const { port: actual } = server.address() as AddressInfo
  return {
    server,
    url: `http://${host}:${actual}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
