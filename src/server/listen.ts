/**
 * The standalone server's listeners and its shutdown: the public HTTP server with its
 * timeouts, the TCP port, the Unix socket (WSDS_SOCKET), the metrics port
 * (WSDS_METRICS_PORT), and the order in which a running (or half-started) server lets go.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Server as NetServer } from 'node:net'
import { listenUnixSocket } from './unix-socket.ts'

/** How long a client may take to send its request headers, ms. */
export const HEADERS_TIMEOUT_MS = 10_000
/** How long a client may take to send a whole request, ms. */
export const REQUEST_TIMEOUT_MS = 300_000
/** How often Node looks for connections over those timeouts, ms. */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000
/** Longer than common load balancer idle timeouts, so the proxy closes idle sockets first. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000

/**
 * The public HTTP server, not yet listening. A client that trickles its request (or upgrade)
 * headers is cut off after 10 s, not the ~90 s that Node's defaults allow (headersTimeout
 * 60 s, checked every 30 s); a whole request gets 5 minutes. Node answers 408 and closes.
 */
export function createHttpServer(): Server {
  const server = createServer({
    headersTimeout: HEADERS_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
  })
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  server.on('clientError', (err: Error & { code?: string }, socket) => {
    // Headers or a request that took too long (HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS): 408.
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request'
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`)
    else socket.destroy()
  })
  return server
}

/** Listens on `port` (0: any free one) at `host`; resolves with the port bound. */
export function listenTcp(server: NetServer, port: number, host: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve((server.address() as AddressInfo).port)
    })
  })
}

/**
 * The Unix socket listener. Handing accepted sockets to the HTTP server through its
 * 'connection' event is the documented way to serve one server from several listeners.
 */
export function listenSocket(server: Server, path: string, mode: number): Promise<NetServer> {
  return listenUnixSocket((socket) => server.emit('connection', socket), path, mode)
}

/** The metrics port's own HTTP server, listening. */
export async function listenMetricsPort(handle: (req: IncomingMessage, res: ServerResponse) => void, port: number, host: string): Promise<Server> {
  const server = createServer(handle)
  try {
    await listenTcp(server, port, host)
  } catch (err) {
    server.close()
    throw err
  }
  return server
}

/** `http://host:port`, with an IPv6 host in brackets. */
export function httpUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** What a server holds, in the order shutdown lets go of it. */
export interface ServerParts {
  admin: { close(): void }
  policy: { close(): void } | null
  gateway: { close(): Promise<void> }
  authenticator: { close(): void }
  metricsServer: NetServer | null
  socketServer: NetServer | null
  server: Server
  store: { close(): Promise<void> }
}

const closeListener = (listener: NetServer): Promise<void> => new Promise((resolve) => listener.close(() => resolve()))

/**
 * Shuts down in dependency order: stop taking work (admin broadcasts, rules file), close the
 * WebSockets (which deletes their records), then the listeners and their connections, and the
 * store last, once nothing can use it. `closeStore: false` leaves a store the caller passed in
 * open when a start fails.
 */
export async function shutdown(parts: ServerParts, options: { closeStore: boolean }): Promise<void> {
  parts.admin.close()
  parts.policy?.close()
  await parts.gateway.close()
  parts.authenticator.close()
  if (parts.metricsServer !== null) await closeListener(parts.metricsServer)
  // Stop accepting (which also removes the socket file: libuv unlinks what it bound). The
  // socket listener's callback waits for the connections it accepted, closed just below.
  const socketClosed = parts.socketServer === null ? Promise.resolve() : closeListener(parts.socketServer)
  parts.server.closeAllConnections()
  await closeListener(parts.server)
  await socketClosed
  if (options.closeStore) await parts.store.close()
}
