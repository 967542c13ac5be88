/**
 * Streaming reverse proxy to one upstream: request and response bodies are piped, never
 * buffered, so uploads and downloads of any size pass with constant memory.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { CONNECTION_ID_HEADER } from '../core/access.ts'
import { WsdsError } from '../core/errors.ts'
import { CONNECTION_ID_RESPONSE_HEADER } from '../core/front.ts'
import { sendJson } from './http-auth.ts'

export interface ReverseProxyOptions {
  /** Base URL of the upstream; its path is prefixed to the forwarded path. */
  upstream: string | URL
  /** Prefix removed from the incoming path before forwarding (e.g. '/api'). */
  stripPrefix?: string
  /** Upstream sockets kept open per proxy (default 256). */
  maxSockets?: number
  /** Upstream response timeout, ms (default 30000). */
  timeoutMs?: number
  /**
   * The client is a proxy we trust (WSDS_TRUST_PROXY): keep its X-Forwarded-Host / -Proto and
   * append to its X-Forwarded-For. Otherwise (default) those are ours alone.
   */
  trustProxy?: boolean
  /** Request header carrying the connection id (default `connectionid`). */
  idHeader?: string
}

export type ProxyHandler = (req: IncomingMessage, res: ServerResponse, extraHeaders?: Record<string, string>) => void

// RFC 9110 7.6.1: connection-specific fields are for one hop only.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
])

/** Client-supplied forwarding headers, dropped unless the client is a trusted proxy. */
const FORWARDING = new Set(['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-prefix', 'x-forwarded-method', 'x-forwarded-uri', 'x-real-ip'])

/**
 * Whether a header name is one of ours (x-wsds-*), in any spelling: frameworks and CGI-style
 * servers fold `_` into `-` (and upper into lower case), so `X_WSDS_VERDICT` would read as
 * our verdict there. Runs for every header of every request: compares character codes rather
 * than building a lower-cased copy.
 */
export function isWsdsHeaderName(name: string): boolean {
  if (name.length <= 7) return false
  for (let i = 0; i < 7; i++) {
    const c = name.charCodeAt(i)
    const want = WSDS_PREFIX.charCodeAt(i)
    // '-' matches '-' or '_'; letters match either case.
    if (want === 0x2d ? c !== 0x2d && c !== 0x5f : (c | 0x20) !== want) return false
  }
  return true
}
const WSDS_PREFIX = 'x-wsds-'

/** Whether a (lower-case) name is a forwarding header, `_` read as `-`. */
function isForwardingName(name: string): boolean {
  // Every name in FORWARDING starts with f or x: most headers are ruled out by one compare.
  const c = name.charCodeAt(0)
  if (c !== 0x66 && c !== 0x78) return false
  return FORWARDING.has(name.includes('_') ? name.replace(/_/g, '-') : name)
}

function forwardHeaders(headers: IncomingHttpHeaders, dropForwarding = false): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  // Names the Connection header lists are hop-by-hop too; most requests have none or
  // `keep-alive`, so the list is only built when there is one.
  const connection = headers.connection
  const named = connection === undefined || connection === '' ? null : connection.toLowerCase().split(',').map((s) => s.trim())
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || HOP_BY_HOP.has(name) || (named !== null && named.includes(name))) continue
    // x-wsds-* headers come only from the authenticator: a client must not be able to
    // hand the upstream its own verdict or connection id.
    if (isWsdsHeaderName(name)) continue
    if (dropForwarding && isForwardingName(name)) continue
    out[name] = value
  }
  return out
}

export function createReverseProxy(options: ReverseProxyOptions): ProxyHandler {
  let base: URL
  try {
    base = new URL(options.upstream)
  } catch (cause) {
    throw new WsdsError('ERR_CONFIG', `upstream "${String(options.upstream)}" is not a URL`, { cause })
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new WsdsError('ERR_CONFIG', `upstream "${base.href}" must be http: or https:`)
  }
  const isHttps = base.protocol === 'https:'
  const maxSockets = options.maxSockets ?? 256
  const agent = isHttps ? new HttpsAgent({ keepAlive: true, maxSockets }) : new HttpAgent({ keepAlive: true, maxSockets })
  const send = isHttps ? httpsRequest : httpRequest
  const basePath = base.pathname.replace(/\/$/, '')
  const strip = options.stripPrefix ?? ''
  const timeoutMs = options.timeoutMs ?? 30_000
  const trustProxy = options.trustProxy ?? false
  const idHeader = (options.idHeader ?? CONNECTION_ID_HEADER).toLowerCase()

  return (req, res, extraHeaders) => {
    let path = req.url ?? '/'
    if (strip !== '' && path.startsWith(strip)) path = path.slice(strip.length)
    if (!path.startsWith('/')) path = '/' + path
    const headers = forwardHeaders(req.headers, !trustProxy)
    const remote = req.socket.remoteAddress ?? ''
    // Set here, never taken from an untrusted client: an upstream that logs or rate-limits
    // by these would otherwise believe whatever the caller wrote.
    const prior = trustProxy ? req.headers['x-forwarded-for'] : undefined
    headers['x-forwarded-for'] = prior ? `${String(prior)}, ${remote}` : remote
    const proto = 'encrypted' in req.socket ? 'https' : 'http'
    if (trustProxy) headers['x-forwarded-proto'] ??= proto
    else headers['x-forwarded-proto'] = proto
    if (req.headers.host !== undefined) {
      if (trustProxy) headers['x-forwarded-host'] ??= req.headers.host
      else headers['x-forwarded-host'] = req.headers.host
    }
    headers.host = base.host
    // The id the authenticator checked, not the client's raw header: Node joins a repeated
    // header into "a, b", and an upstream keying on it could be dodged that way.
    const verifiedId = extraHeaders?.[CONNECTION_ID_RESPONSE_HEADER]
    if (verifiedId !== undefined) headers[idHeader] = verifiedId
    else {
      // headersDistinct copies every header into arrays: read it only when there is no verified id.
      const sentIds = req.headersDistinct[idHeader]
      if (sentIds !== undefined && sentIds.length > 0) headers[idHeader] = sentIds[0]!
    }
    if (extraHeaders) for (const name in extraHeaders) headers[name] = extraHeaders[name]!

    const upstreamReq = send({
      protocol: base.protocol,
      hostname: base.hostname,
      port: base.port,
      method: req.method,
      path: basePath + path,
      headers,
      agent,
      timeout: timeoutMs,
    })
    upstreamReq.on('response', (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, forwardHeaders(upstreamRes.headers))
      upstreamRes.pipe(res)
      upstreamRes.on('error', () => res.destroy())
    })
    upstreamReq.on('timeout', () => upstreamReq.destroy(new Error('upstream timeout')))
    upstreamReq.on('error', () => {
      if (!res.headersSent) sendJson(res, 502, '{"error":"bad-gateway"}')
      else res.destroy()
    })
    // A client that goes away must not leave the upstream request running.
    res.on('close', () => {
      if (!res.writableFinished) upstreamReq.destroy()
    })
    req.pipe(upstreamReq)
  }
}
