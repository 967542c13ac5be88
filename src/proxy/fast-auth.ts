/**
 * Forward auth without node:http. A reverse proxy asks `GET /wsds/auth` once per API call,
 * on a pool of keep-alive connections, and node:http spends more on each of those requests
 * (request and response objects, header maps, a writable stream) than the decision costs.
 *
 * Every connection to the gateway's listeners starts here. A request that is a plain
 * forward-auth check (GET, HTTP/1.1, the auth path, one Host, no body, no upgrade, a head
 * made only of well-formed lines) is answered directly. At the first request that is
 * anything else (a WebSocket upgrade, the API, health, metrics, the demo, a head this does
 * not recognise) the connection goes to the HTTP server for good, with every byte not yet
 * answered, and node:http parses and answers it as it always has. Recognising a strict
 * subset is the design: whatever is unusual, every malformed request included, stays
 * node:http's. The one exception is a forward-auth head that never completes: it gets 408
 * at the headers timeout, or 400 when the peer ends its side first.
 *
 * The decision is the same `Front` every other front uses; only the framing differs.
 */
import { maxHeaderSize, type Server as HttpServer } from 'node:http'
import type { Socket } from 'node:net'
import { CONNECTION_ID_HEADER } from '../core/access.ts'
import type { Front, FrontDecision } from '../core/front.ts'

export interface FastAuthOptions {
  /** Where connections go when a request is not a plain forward-auth check. */
  http: HttpServer
  front: Front
  /** The forward-auth path, e.g. `/wsds/auth`. */
  path: string
  /** Lower-case name of the header carrying the id. */
  header?: string
  /** Idle time between requests before the connection is closed (node:http's keepAliveTimeout). */
  keepAliveTimeoutMs: number
  /** Time from a request's first byte to the end of its head (node:http's headersTimeout). */
  headersTimeoutMs: number
  /** A decision that threw (a bug, not a refusal): the request gets 500 and the connection closes. */
  onError?: (err: unknown) => void
}

export interface FastAuthStats {
  /** Forward-auth requests answered here. */
  answered: number
  /** Connections given to the HTTP server. */
  handedOver: number
  /** Connections currently answered here. */
  open: number
}

export interface FastAuth {
  /** The connection listener for every listener of the gateway (TCP and Unix socket). */
  accept(socket: Socket): void
  readonly stats: Readonly<FastAuthStats>
  /** Destroys the connections still answered here (shutdown). */
  closeAll(): void
}

// node:http's limit on a head (16 KiB unless --max-http-header-size says otherwise): a
// longer head goes to node:http, which refuses it.
const MAX_HEAD_BYTES = maxHeaderSize
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// Field values as llhttp accepts them in strict mode: visible ASCII, SP, HTAB, obs-text.
const VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/
// The query of the request target: visible ASCII only.
const QUERY_RE = /^[\x21-\x7e]*$/
// node:http's default maxHeadersCount: it ignores headers past it, so such heads are its own.
const MAX_HEADERS = 2000

/** Strips optional whitespace (SP, HTAB) only: String#trim would also eat obs-text such as 0xA0. */
function trimOws(value: string): string {
  let start = 0
  let end = value.length
  while (start < end && (value.charCodeAt(start) === 32 || value.charCodeAt(start) === 9)) start++
  while (end > start && (value.charCodeAt(end - 1) === 32 || value.charCodeAt(end - 1) === 9)) end--
  return start === 0 && end === value.length ? value : value.slice(start, end)
}

interface Connection {
  socket: Socket
  /** Bytes received and not yet answered, as latin1 (one char per byte, lossless). */
  pending: string
  /** Runs from the first byte of a head that did not arrive whole (node:http's headersTimeout). */
  headTimer: NodeJS.Timeout | null
  /** A decision is being read from the store: stop parsing, keep the order of answers. */
  busy: boolean
  /** The peer asked for `Connection: close`: nothing after that request is answered. */
  closing: boolean
  /** The peer ended its side: answer what is complete, then end ours. */
  ended: boolean
  /** The peer is not reading our answers: stop reading its requests until it does. */
  blocked: boolean
  /** Given to node:http: nothing here touches the socket any more. */
  gone: boolean
}

/** What the head of one request says, when it is a plain forward-auth check. */
interface Check {
  connectionId: string | undefined
  target: string
  close: boolean
}

const HANDED_OVER = Symbol('handed-over')

export function createFastAuth(options: FastAuthOptions): FastAuth {
  const { http, front, path } = options
  const header = options.header ?? CONNECTION_ID_HEADER
  const prefix = `GET ${path}`
  // 0 disables a timeout, as it does for node:http.
  const keepAlive =
    options.keepAliveTimeoutMs > 0
      ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(options.keepAliveTimeoutMs / 1000)}\r\n\r\n`
      : 'Connection: keep-alive\r\n\r\n'
  const stats: FastAuthStats = { answered: 0, handedOver: 0, open: 0 }
  const open = new Set<Socket>()

  // RFC 9110 asks origin servers for a Date; node:http also formats it once per second.
  let dateSecond = 0
  let dateLine = ''
  const date = (): string => {
    const now = Date.now()
    const second = now - (now % 1000)
    if (second !== dateSecond) {
      dateSecond = second
      dateLine = `Date: ${new Date(second).toUTCString()}\r\n`
    }
    return dateLine
  }

  // The status line and headers of a decision, without Date and Connection. Admitted ids
  // return the same frozen decision on every cache hit, so this is built once per connection
  // record rather than per request.
  const blocks = new WeakMap<FrontDecision, string>()
  const blockOf = (decision: FrontDecision): string => {
    let block = blocks.get(decision)
    if (block !== undefined) return block
    block = decision.pass ? 'HTTP/1.1 204 No Content\r\n' : `HTTP/1.1 ${decision.status} ${decision.status === 503 ? 'Service Unavailable' : 'Unauthorized'}\r\n`
    for (const [name, value] of Object.entries(decision.headers)) {
      // Values come from the store (an id we issued, an allowed origin); one that node:http
      // would refuse (a line break would split the response) is refused here too.
      if (!TOKEN_RE.test(name) || !VALUE_RE.test(value)) throw new TypeError(`invalid response header ${JSON.stringify(name)}`)
      block += `${name}: ${value}\r\n`
    }
    block += 'Cache-Control: no-store\r\n'
    if (!decision.pass) {
      const body = decision.body ?? '{}'
      block += `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`
    }
    blocks.set(decision, block)
    return block
  }

  const responseOf = (decision: FrontDecision, close: boolean): string =>
    blockOf(decision) + date() + (close ? 'Connection: close\r\n\r\n' : keepAlive) + (decision.pass ? '' : (decision.body ?? '{}'))

  /** Reads one request head (without its blank line): the check, or HANDED_OVER for node:http. */
  const parseHead = (head: string): Check | typeof HANDED_OVER => {
    let lineEnd = head.indexOf('\r\n')
    if (lineEnd === -1) lineEnd = head.length
    const requestLine = head.slice(0, lineEnd)
    if (!requestLine.endsWith(' HTTP/1.1')) return HANDED_OVER
    const target = requestLine.slice(4, -9)
    if (target !== path) {
      if (target.charCodeAt(path.length) !== 63 /* ? */ || !target.startsWith(path) || !QUERY_RE.test(target.slice(path.length + 1))) return HANDED_OVER
    }
    let connectionId: string | undefined
    let hosts = 0
    let lengths = 0
    let count = 0
    let close = false
    let start = lineEnd + 2
    while (start < head.length) {
      if (++count > MAX_HEADERS) return HANDED_OVER
      let end = head.indexOf('\r\n', start)
      if (end === -1) end = head.length
      const line = head.slice(start, end)
      start = end + 2
      const colon = line.indexOf(':')
      if (colon <= 0) return HANDED_OVER
      const name = line.slice(0, colon)
      if (!TOKEN_RE.test(name)) return HANDED_OVER
      const raw = line.slice(colon + 1)
      if (!VALUE_RE.test(raw)) return HANDED_OVER
      const value = trimOws(raw)
      const lower = name.toLowerCase()
      if (lower === header) {
        // node:http would join repeated values with ", " (an id that is never valid); the
        // strict subset simply leaves that case to it.
        if (connectionId !== undefined) return HANDED_OVER
        connectionId = value
      } else if (lower === 'host') {
        hosts++
      } else if (lower === 'content-length') {
        if (value !== '0' || ++lengths > 1) return HANDED_OVER
      } else if (lower === 'transfer-encoding' || lower === 'upgrade' || lower === 'expect') {
        return HANDED_OVER
      } else if (lower === 'connection') {
        for (const token of value.toLowerCase().split(',')) {
          const t = trimOws(token)
          if (t === 'close') close = true
          else if (t === 'upgrade') return HANDED_OVER
        }
      }
    }
    if (hosts !== 1) return HANDED_OVER
    // An empty header is a missing id, as node:http reports it.
    return { connectionId: connectionId === '' ? undefined : connectionId, target, close }
  }

  const clearHeadTimer = (conn: Connection): void => {
    if (conn.headTimer !== null) {
      clearTimeout(conn.headTimer)
      conn.headTimer = null
    }
  }

  const handOver = (conn: Connection): void => {
    const { socket } = conn
    conn.gone = true
    clearHeadTimer(conn)
    socket.removeListener('data', onData)
    socket.removeListener('end', onEnd)
    socket.removeListener('timeout', onTimeout)
    socket.removeListener('close', onClose)
    socket.removeListener('error', onError)
    socket.removeListener('drain', onDrain)
    socket.setTimeout(0)
    open.delete(socket)
    stats.open = open.size
    stats.handedOver++
    const rest = conn.pending
    conn.pending = ''
    // node:http takes the socket as if it had just been accepted; the bytes already read are
    // fed to its parser before anything else arrives (`unshift` would not keep that order,
    // because node:http reads the socket's handle directly).
    http.emit('connection', socket)
    if (rest.length > 0) socket.emit('data', Buffer.from(rest, 'latin1'))
    // It missed the peer's end of stream, which it needs to finish the connection.
    if (conn.ended) socket.emit('end')
  }

  /** Ends our side after `last`, answering nothing more. */
  const finish = (conn: Connection, last = ''): void => {
    clearHeadTimer(conn)
    conn.pending = ''
    conn.closing = true
    conn.socket.end(last)
  }

  const fail = (conn: Connection, err: unknown): void => {
    options.onError?.(err)
    const body = '{"error":"internal"}'
    finish(conn, `HTTP/1.1 500 Internal Server Error\r\n${date()}Cache-Control: no-store\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`)
  }

  /** Writes answers; a peer that does not read them stops being read until it catches up. */
  const flush = (conn: Connection, out: string): void => {
    if (out === '' || conn.socket.write(out, 'latin1') || conn.blocked) return
    conn.blocked = true
    conn.socket.pause()
    conn.socket.once('drain', onDrain)
  }

  const onDecision = (conn: Connection, decision: FrontDecision): void => {
    conn.busy = false
    if (conn.socket.destroyed) return
    let out: string
    try {
      out = responseOf(decision, conn.closing)
    } catch (err) {
      return fail(conn, err)
    }
    stats.answered++
    flush(conn, out)
    if (conn.closing) return finish(conn)
    if (!conn.blocked) conn.socket.resume()
    drain(conn)
  }

  const onDecideError = (conn: Connection, err: unknown): void => {
    conn.busy = false
    if (!conn.socket.destroyed) fail(conn, err)
  }

  /**
   * Answers every complete request in `pending`, in order, until one needs the store, the
   * peer stops reading, or a request is not a forward-auth check (then node:http takes over).
   */
  const drain = (conn: Connection): void => {
    let out = ''
    while (!conn.busy && !conn.blocked && !conn.closing && conn.pending.length > 0) {
      const { pending } = conn
      // Not a forward-auth request: decided from its first bytes, so upgrades and page
      // loads do not wait for their whole head here.
      const n = Math.min(pending.length, prefix.length)
      if (pending.slice(0, n) !== prefix.slice(0, n)) break
      const end = pending.indexOf('\r\n\r\n')
      if (end === -1) {
        if (pending.length > MAX_HEAD_BYTES) break
        // A head that does not arrive whole must arrive within headersTimeoutMs in all.
        if (conn.headTimer === null && options.headersTimeoutMs > 0) conn.headTimer = setTimeout(onHeadTimeout, options.headersTimeoutMs, conn)
        flush(conn, out)
        if (conn.ended) finish(conn, 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
        return
      }
      if (end > MAX_HEAD_BYTES) break
      const check = parseHead(pending.slice(0, end))
      if (check === HANDED_OVER) break
      clearHeadTimer(conn)
      conn.pending = pending.slice(end + 4)
      if (check.close) conn.closing = true
      const decision = front.decideCached(check.connectionId)
      if (decision === undefined) {
        // A store read: answer when it returns, and read nothing more until then.
        conn.busy = true
        conn.socket.pause()
        front
          .decide({ connectionId: check.connectionId, method: 'GET', path: check.target, remoteAddress: conn.socket.remoteAddress })
          // Two callbacks, not then().catch(): an error thrown after this answer (by
          // node:http, once it owns the socket) is not a failed decision.
          .then(
            (d) => onDecision(conn, d),
            (err: unknown) => onDecideError(conn, err),
          )
        break
      }
      try {
        out += responseOf(decision, conn.closing)
      } catch (err) {
        flush(conn, out)
        return fail(conn, err)
      }
      stats.answered++
    }
    flush(conn, out)
    if (conn.busy || conn.blocked || conn.socket.destroyed) return
    if (conn.closing) return finish(conn)
    if (conn.pending.length > 0) return handOver(conn)
    if (conn.ended) finish(conn)
  }

  const connections = new WeakMap<Socket, Connection>()

  function onData(this: Socket, chunk: Buffer): void {
    const conn = connections.get(this)!
    if (conn.closing) return
    conn.pending += chunk.toString('latin1')
    if (!conn.busy && !conn.blocked) drain(conn)
  }

  function onDrain(this: Socket): void {
    const conn = connections.get(this)!
    conn.blocked = false
    if (conn.gone || conn.socket.destroyed || conn.busy) return
    conn.socket.resume()
    drain(conn)
  }

  function onEnd(this: Socket): void {
    const conn = connections.get(this)!
    // allowHalfOpen: the peer may half-close after its last requests; those still get
    // their answers before our side ends.
    conn.ended = true
    if (!conn.busy && !conn.blocked) drain(conn)
  }

  function onHeadTimeout(conn: Connection): void {
    conn.headTimer = null
    if (conn.gone || conn.socket.destroyed) return
    // As node:http answers a head that takes longer than headersTimeout.
    finish(conn, 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n')
  }

  function onTimeout(this: Socket): void {
    this.destroy()
  }

  // A reset by the peer is routine; node:http has its own handler once it takes over.
  function onError(this: Socket): void {
    this.destroy()
  }

  function onClose(this: Socket): void {
    const conn = connections.get(this)
    if (conn !== undefined) clearHeadTimer(conn)
    if (open.delete(this)) stats.open = open.size
  }

  return {
    stats,
    accept(socket) {
      const conn: Connection = { socket, pending: '', headTimer: null, busy: false, closing: false, ended: false, blocked: false, gone: false }
      connections.set(socket, conn)
      open.add(socket)
      stats.open = open.size
      socket.setNoDelay(true)
      if (options.keepAliveTimeoutMs > 0) socket.setTimeout(options.keepAliveTimeoutMs)
      socket.on('data', onData)
      socket.on('end', onEnd)
      socket.on('timeout', onTimeout)
      socket.on('close', onClose)
      socket.on('error', onError)
    },
    closeAll() {
      for (const socket of open) socket.destroy()
      open.clear()
      stats.open = 0
    },
  }
}
