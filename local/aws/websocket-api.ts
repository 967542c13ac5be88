/**
 * A local API Gateway WebSocket API: enough of it to run the real handlers with the events
 * API Gateway sends and to give them a real `@connections` endpoint.
 *
 * Emulated: `$connect` (a non-2xx result or a throw refuses the upgrade, 403 / 500, no
 * socket), route selection on `$request.body.action` then `$default` (else a `Forbidden`
 * frame), `$disconnect` with `disconnectStatusCode` / `disconnectReason` after every close
 * (client's or a DELETE), an integration error frame (`Internal server error`) when a route
 * throws, the 128 KB message limit (close 1009), and `@connections/{id}` POST / GET / DELETE
 * with 410 GoneException for ids that are not open. A DELETE closes with the code in the
 * `x-wsds-close-code` header (src/aws/connections.ts), where API Gateway uses its own.
 * Not emulated: the 32 KB frame limit (ws reassembles fragments before we see them), the
 * 10-minute idle and 2-hour connection limits, throttling, and SigV4 checks. `dropDisconnects`
 * loses `$disconnect` calls on purpose, as AWS may.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocket, WebSocketServer, type RawData } from 'ws'
import type { WebSocketEvent, WebSocketResult } from '../../src/aws/events.ts'
import { CLOSE_CODE_HEADER } from '../../src/aws/connections.ts'

/** API Gateway's WebSocket message limit (128 KB); frames are limited to 32 KB (not emulated). */
export const MAX_MESSAGE_BYTES = 128 * 1024

export type RouteHandler = (event: WebSocketEvent) => Promise<WebSocketResult | undefined | void>

export interface WebSocketApiOptions {
  /** Route key -> handler; `$connect`, `$disconnect`, `$default` and action routes. */
  routes: Record<string, RouteHandler>
  stage: string
  domainName: string
  /** Called for each frame sent to a client (counting, outcome metrics). */
  onSend?: (connectionId: string, text: string) => void
  onMessage?: (connectionId: string) => void
  onDisconnect?: (connectionId: string, connectedMs: number) => void
}

interface Conn {
  ws: WebSocket
  connectedAt: number
  lastActiveAt: number
  sourceIp: string
  userAgent: string
  disconnected: Promise<void>
}

export interface WebSocketApi {
  /** Handles an HTTP upgrade on the public server (the caller picks the path). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Base URL of the @connections API (the stage's callback URL), e.g. http://127.0.0.1:p/live */
  callbackUrl: string
  readonly openConnections: number
  /**
   * While true, closes do not invoke `$disconnect` (AWS calls it best effort): for testing
   * what a lost one leaves behind. `@connections` still answers 410 for those ids.
   */
  dropDisconnects: boolean
  close(): Promise<void>
}

/**
 * Ids shaped like API Gateway's own (`R0oXAdfD0kwCH6w=`: 11 bytes, base64 with padding), so
 * a handler that hands this routing handle out as the credential fails the suites (too
 * short, and `+`, `/`, `=` are not URL-safe). PROTOCOL.md, Sequence 2.
 */
export const newGatewayConnectionId = () => randomBytes(11).toString('base64')

const firstValues = (req: IncomingMessage) => {
  const headers: Record<string, string> = {}
  const multi: Record<string, string[]> = {}
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!
    const value = req.rawHeaders[i + 1]!
    headers[name] ??= value
    ;(multi[name] ??= []).push(value)
  }
  return { headers, multi }
}

export async function startWebSocketApi(options: WebSocketApiOptions): Promise<WebSocketApi> {
  const { routes, stage, domainName } = options
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES })
  const conns = new Map<string, Conn>()
  // Invocations still running, so close() can wait for them (a $disconnect racing shutdown).
  const inflight = new Set<Promise<unknown>>()
  const track = <T>(p: Promise<T>): Promise<T> => {
    inflight.add(p)
    p.finally(() => inflight.delete(p)).catch(() => {})
    return p
  }
  const context = (connectionId: string, routeKey: string, eventType: WebSocketEvent['requestContext']['eventType'], c?: Pick<Conn, 'connectedAt' | 'sourceIp' | 'userAgent'>) => ({
    connectionId,
    routeKey,
    eventType,
    domainName,
    stage,
    requestId: randomBytes(8).toString('hex'),
    connectedAt: c?.connectedAt ?? Date.now(),
    identity: { sourceIp: c?.sourceIp ?? '127.0.0.1', userAgent: c?.userAgent ?? '' },
  })
  const send = (id: string, text: string) => {
    const c = conns.get(id)
    if (!c || c.ws.readyState !== WebSocket.OPEN) return false
    c.ws.send(text)
    options.onSend?.(id, text)
    return true
  }

  const onMessage = async (id: string, data: RawData, isBinary: boolean) => {
    const c = conns.get(id)
    if (!c) return
    c.lastActiveAt = Date.now()
    options.onMessage?.(id)
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
    const body = isBinary ? buf.toString('base64') : buf.toString('utf8')
    let routeKey = '$default'
    if (!isBinary) {
      try {
        const action = (JSON.parse(body) as { action?: unknown } | null)?.action
        if (typeof action === 'string' && action in routes && !action.startsWith('$')) routeKey = action
      } catch {}
    }
    const handler = routes[routeKey]
    if (!handler) return void send(id, JSON.stringify({ message: 'Forbidden', connectionId: id, requestId: randomBytes(8).toString('hex') }))
    try {
      await track(handler({ requestContext: context(id, routeKey, 'MESSAGE', c), body, isBase64Encoded: isBinary }))
    } catch (err) {
      console.error(`route ${routeKey} failed:`, err)
      send(id, JSON.stringify({ message: 'Internal server error', connectionId: id, requestId: randomBytes(8).toString('hex') }))
    }
  }

  // Set by close(): upgrades still deciding then are dropped, so no socket outlives the API.
  let closing = false
  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (closing) return void socket.destroy()
    const id = newGatewayConnectionId()
    const { headers, multi } = firstValues(req)
    const url = new URL(req.url ?? '/', 'http://x')
    const query = url.searchParams.size ? Object.fromEntries(url.searchParams) : null
    const meta = { connectedAt: Date.now(), sourceIp: req.socket.remoteAddress ?? '127.0.0.1', userAgent: String(req.headers['user-agent'] ?? '') }
    const refuse = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
    }
    const connect = routes.$connect
    const decided = connect
      ? track(connect({ requestContext: context(id, '$connect', 'CONNECT', meta), headers, multiValueHeaders: multi, queryStringParameters: query, isBase64Encoded: false }))
      : Promise.resolve({ statusCode: 200 })
    decided.then(
      (result) => {
        const status = result?.statusCode ?? 200
        if (status < 200 || status > 299) return refuse(403, 'Forbidden')
        if (socket.destroyed || closing) {
          socket.destroy()
          return void track(Promise.resolve(routes.$disconnect?.({ requestContext: context(id, '$disconnect', 'DISCONNECT', meta) }))).catch(() => {})
        }
        wss.handleUpgrade(req, socket, head, (ws) => {
          let resolveGone!: () => void
          const c: Conn = { ws, ...meta, lastActiveAt: meta.connectedAt, disconnected: new Promise((r) => (resolveGone = r)) }
          conns.set(id, c)
          ws.on('message', (data, isBinary) => void onMessage(id, data, isBinary))
          ws.on('error', () => {})
          ws.on('close', (code, reason) => {
            conns.delete(id)
            options.onDisconnect?.(id, Date.now() - c.connectedAt)
            if (api.dropDisconnects) return resolveGone()
            const event: WebSocketEvent = { requestContext: { ...context(id, '$disconnect', 'DISCONNECT', c), disconnectStatusCode: code, disconnectReason: reason.toString() } }
            track(Promise.resolve(routes.$disconnect?.(event)))
              .catch((err) => console.error('$disconnect failed:', err))
              .finally(resolveGone)
          })
        })
      },
      (err) => {
        console.error('$connect failed:', err)
        refuse(500, 'Internal Server Error')
      },
    )
  }

  // The @connections API, on its own loopback port: on AWS it is a separate, IAM-signed endpoint.
  const management: Server = createServer((req, res) => {
    const m = /\/@connections\/([^/?]+)$/.exec((req.url ?? '').split('?')[0]!)
    const reply = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      const text = body === undefined ? '' : JSON.stringify(body)
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
      res.end(text)
    }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (!m) return reply(404, { message: 'Not Found' })
      const id = decodeURIComponent(m[1]!)
      const c = conns.get(id)
      const gone = () => reply(410, { message: 'Gone' }, { 'x-amzn-errortype': 'GoneException' })
      if (!c || c.ws.readyState !== WebSocket.OPEN) return gone()
      switch (req.method) {
        case 'POST': {
          const data = Buffer.concat(chunks)
          if (data.length > MAX_MESSAGE_BYTES) return reply(413, { message: 'Payload Too Large' }, { 'x-amzn-errortype': 'PayloadTooLargeException' })
          send(id, data.toString('utf8'))
          return reply(200)
        }
        case 'GET':
          return reply(200, { ConnectedAt: new Date(c.connectedAt).toISOString(), LastActiveAt: new Date(c.lastActiveAt).toISOString(), Identity: { SourceIp: c.sourceIp, UserAgent: c.userAgent } })
        case 'DELETE': {
          const asked = Number(req.headers[CLOSE_CODE_HEADER])
          const code = asked === 1000 || asked === 1009 || asked === 1011 || (asked >= 3000 && asked <= 4999) ? asked : 1000
          c.ws.close(code)
          return reply(204)
        }
        default:
          return reply(405, { message: 'Method Not Allowed' })
      }
    })
  })
  await new Promise<void>((r) => management.listen(0, '127.0.0.1', r))
  const { port } = management.address() as AddressInfo

  const api: WebSocketApi = {
    dropDisconnects: false,
    handleUpgrade,
    callbackUrl: `http://127.0.0.1:${port}/${stage}`,
    get openConnections() {
      return conns.size
    },
    async close() {
      closing = true
      // Until nothing is left: a $connect still running when close() began may add a socket.
      while (conns.size > 0 || inflight.size > 0) {
        const gone = [...conns.values()].map((c) => {
          c.ws.terminate()
          return c.disconnected
        })
        await Promise.all(gone)
        await Promise.allSettled([...inflight])
      }
      management.closeAllConnections()
      await new Promise<void>((r) => management.close(() => r()))
    },
  }
  return api
}
