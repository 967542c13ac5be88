/**
 * Forward auth answered without node:http (src/proxy/fast-auth.ts): the same answers as
 * node:http gives, in order, on the same connections; everything it does not recognise goes
 * to node:http with no byte lost; limits on time, head size and unread answers.
 */
import assert from 'node:assert/strict'
import { createServer as createHttpServer } from 'node:http'
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { createAuthenticator } from '../src/core/authenticator.ts'
import { createFront } from '../src/core/front.ts'
import { createFastAuth, type FastAuth } from '../src/proxy/fast-auth.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { TEST_ORIGIN, startTestServer, switchableStore, testKeySet, type TestServer } from './helpers/server.ts'
import { verifiedHandshake, type TestClient } from './helpers/ws-client.ts'

interface Parsed {
  status: number
  headers: Record<string, string>
  body: string
}

/** Splits a byte stream of HTTP/1.1 responses (Content-Length framed or bodiless) into answers. */
function parseResponses(text: string): { responses: Parsed[]; rest: string } {
  const responses: Parsed[] = []
  let rest = text
  for (;;) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const lines = rest.slice(0, end).split('\r\n')
    const status = Number(lines[0]!.split(' ')[1])
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
    }
    // A 101 hands the connection to WebSocket frames: nothing after it is HTTP.
    const length = status === 101 || status === 204 ? 0 : Number(headers['content-length'] ?? 0)
    if (rest.length < end + 4 + length) break
    responses.push({ status, headers, body: rest.slice(end + 4, end + 4 + length) })
    rest = rest.slice(end + 4 + length)
    if (status === 101) break
  }
  return { responses, rest }
}

/** A raw connection that collects every byte the server sends. */
class Raw {
  readonly socket: Socket
  received = ''
  closed = false
  private constructor(socket: Socket) {
    this.socket = socket
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => (this.received += d))
    socket.on('close', () => (this.closed = true))
    socket.on('error', () => {})
  }
  static open(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new Raw(socket)))
      socket.once('error', reject)
    })
  }
  send(text: string): void {
    this.socket.write(text, 'latin1')
  }
  async responses(count: number, timeoutMs = 2000): Promise<Parsed[]> {
    await eventually(() => parseResponses(this.received).responses.length >= count, timeoutMs, `${count} answers`)
    return parseResponses(this.received).responses
  }
  close(): void {
    this.socket.destroy()
  }
}

const authRequest = (id: string | null, extra = '') =>
  `GET /wsds/auth HTTP/1.1\r\nHost: 127.0.0.1\r\n${id === null ? '' : `connectionId: ${id}\r\n`}${extra}\r\n`

const UNKNOWN = 'u'.repeat(22)

/** The WSDS part of an answer: what a proxy acts on. */
const essence = (r: Parsed) => ({
  status: r.status,
  body: r.body,
  cacheControl: r.headers['cache-control'],
  id: r.headers['x-wsds-connection-id'],
  origin: r.headers['x-wsds-origin'],
  verdict: r.headers['x-wsds-verdict'],
  retryAfter: r.headers['retry-after'],
})

describe('forward auth fast path: in the gateway', () => {
  let s: TestServer
  let state: { down: boolean }
  let client: TestClient
  let id: string
  const raws: Raw[] = []
  const open = async () => {
    const raw = await Raw.open(s.port)
    raws.push(raw)
    return raw
  }

  before(async () => {
    const switchable = switchableStore()
    state = switchable.state
    s = await startTestServer({}, { store: switchable.store })
    ;({ client, connectionId: id } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys, keySet: testKeySet.id }))
  })
  after(async () => {
    for (const raw of raws) raw.close()
    client?.close()
    await s?.close()
  })

  it('answers a verified id with 204 and the connection headers, without node:http', async () => {
    const before = { ...s.forwardAuth }
    const raw = await open()
    raw.send(authRequest(id))
    const [r] = await raw.responses(1)
    assert.deepEqual(essence(r!), {
      status: 204,
      body: '',
      cacheControl: 'no-store',
      id,
      origin: TEST_ORIGIN,
      verdict: 'allow',
      retryAfter: undefined,
    })
    assert.match(r!.headers.date!, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/)
    assert.equal(r!.headers.connection, 'keep-alive')
    assert.equal(s.forwardAuth.answered, before.answered + 1)
    assert.equal(s.forwardAuth.handedOver, before.handedOver, 'the connection stayed on the fast path')
  })

  it('gives the same answers as node:http for verified, unknown, malformed and missing ids', async () => {
    // A chunked request with an empty body is not on the fast path: node:http answers it,
    // through the same front, so both answers can be compared field by field.
    const viaNode = (value: string | null) => authRequest(value, 'Transfer-Encoding: chunked\r\n').replace(/\r\n$/, '\r\n0\r\n\r\n')
    for (const value of [id, UNKNOWN, 'bad id!', null]) {
      const fast = await open()
      fast.send(authRequest(value))
      const slow = await open()
      const handedBefore = s.forwardAuth.handedOver
      slow.send(viaNode(value))
      const [a] = await fast.responses(1)
      const [b] = await slow.responses(1)
      assert.equal(s.forwardAuth.handedOver, handedBefore + 1, 'the chunked request went to node:http')
      assert.deepEqual(essence(a!), essence(b!), `id ${JSON.stringify(value)}`)
      if (value !== id) {
        assert.equal(a!.status, 401)
        assert.equal(a!.body, '{"error":"unauthorized"}')
        assert.equal(a!.headers['content-type'], 'application/json')
        assert.equal(a!.headers['content-length'], String(a!.body.length))
      }
    }
  })

  it('accepts a query string on the auth path', async () => {
    const raw = await open()
    raw.send(authRequest(id).replace('/wsds/auth ', '/wsds/auth?from=nginx '))
    const [r] = await raw.responses(1)
    assert.equal(r!.status, 204)
  })

  it('answers a head that arrives one byte at a time', async () => {
    const raw = await open()
    for (const byte of authRequest(id)) {
      raw.send(byte)
      await new Promise((r) => setImmediate(r))
    }
    const [r] = await raw.responses(1)
    assert.equal(r!.status, 204)
    assert.equal(r!.headers['x-wsds-connection-id'], id)
  })

  it('answers pipelined requests in order, including one that reads the store', async () => {
    const raw = await open()
    // The unknown id is not cached: its answer waits for the store, the next must wait for it.
    raw.send(authRequest(id) + authRequest(UNKNOWN) + authRequest(id) + authRequest(null))
    const answers = await raw.responses(4)
    assert.deepEqual(
      answers.map((a) => [a.status, a.headers['x-wsds-connection-id'] ?? null]),
      [
        [204, id],
        [401, null],
        [204, id],
        [401, null],
      ],
    )
  })

  it('hands the connection to node:http at the first other request, losing no byte and keeping the order', async () => {
    const raw = await open()
    const handedBefore = s.forwardAuth.handedOver
    raw.send(authRequest(id) + 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' + authRequest(UNKNOWN) + authRequest(id))
    const answers = await raw.responses(4)
    assert.deepEqual(
      answers.map((a) => a.status),
      [204, 200, 401, 204],
    )
    assert.equal(JSON.parse(answers[1]!.body).status, 'ok')
    assert.equal(s.forwardAuth.handedOver, handedBefore + 1)
  })

  it('carries a WebSocket upgrade on a connection that answered forward auth first', async () => {
    const raw = await open()
    raw.send(authRequest(id))
    await raw.responses(1)
    raw.send(
      'GET /wsds HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Origin: ${TEST_ORIGIN}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    )
    const answers = await raw.responses(2)
    assert.equal(answers[1]!.status, 101)
    assert.equal(answers[1]!.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')
  })

  it('closes after answering Connection: close, and answers a client that half-closed', async () => {
    const raw = await open()
    raw.send(authRequest(id, 'Connection: close\r\n') + authRequest(id))
    const answers = await raw.responses(1)
    assert.equal(answers[0]!.headers.connection, 'close')
    await eventually(() => raw.closed, 2000, 'the server closes the connection')
    assert.equal(parseResponses(raw.received).responses.length, 1, 'nothing is answered after Connection: close')

    const half = await open()
    half.socket.end(authRequest(id))
    const [r] = await half.responses(1)
    assert.equal(r!.status, 204)
    await eventually(() => half.closed, 2000, 'the server closes the half-closed connection')
  })

  it('answers what a client sent before half-closing, store reads and hand-overs included, then ends', async () => {
    const a = await open()
    a.socket.end(authRequest(UNKNOWN) + authRequest(id))
    assert.deepEqual((await a.responses(2)).map((r) => r.status), [401, 204])
    await eventually(() => a.closed, 2000, 'closed after the answers')

    const b = await open()
    b.socket.end(authRequest('h'.repeat(22)) + 'GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n')
    assert.deepEqual((await b.responses(2)).map((r) => r.status), [401, 200])
    await eventually(() => b.closed, 2000, 'node:http ends the connection it was handed after the end of stream')

    const c = await open()
    c.socket.end('GET /wsds/auth HTTP/1.1\r\nHost: a\r\n')
    assert.deepEqual((await c.responses(1)).map((r) => r.status), [400], 'a head cut short by the end of stream')
    await eventually(() => c.closed, 2000, 'closed after the 400')
  })

  it('leaves what it does not recognise to node:http, which refuses it as it always has', async () => {
    const cases: Array<[string, string, number]> = [
      ['a header line without a colon', 'GET /wsds/auth HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n', 400],
      ['a space in a header name', 'GET /wsds/auth HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n', 400],
      ['a bare LF inside the head', 'GET /wsds/auth HTTP/1.1\r\nHost: a\nconnectionId: x\r\n\r\n', 400],
      ['two Host headers (node:http takes the first)', `GET /wsds/auth HTTP/1.1\r\nHost: a\r\nHost: b\r\nconnectionId: ${UNKNOWN}\r\n\r\n`, 401],
      ['no Host', `GET /wsds/auth HTTP/1.1\r\nconnectionId: ${UNKNOWN}\r\n\r\n`, 400],
      ['a head over 16 KiB (the gateway answers every client error 400)', `GET /wsds/auth HTTP/1.1\r\nHost: a\r\nX-Pad: ${'p'.repeat(17 * 1024)}\r\n\r\n`, 400],
      ['a repeated connectionId', `GET /wsds/auth HTTP/1.1\r\nHost: a\r\nconnectionId: ${id}\r\nconnectionId: ${id}\r\n\r\n`, 401],
      ['HTTP/1.0', `GET /wsds/auth HTTP/1.0\r\nconnectionId: ${id}\r\n\r\n`, 204],
      ['HEAD', `HEAD /wsds/auth HTTP/1.1\r\nHost: a\r\nconnectionId: ${id}\r\n\r\n`, 204],
      ['Content-Length: 0 twice', `GET /wsds/auth HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\nconnectionId: ${id}\r\n\r\n`, 400],
      ['Content-Length with 0xA0', `GET /wsds/auth HTTP/1.1\r\nHost: a\r\nContent-Length: 0\xa0\r\nconnectionId: ${id}\r\n\r\n`, 400],
      ['more than 2,000 headers (node:http reads the first 2,000)', `GET /wsds/auth HTTP/1.1\r\nHost: a\r\n${'X: 1\r\n'.repeat(2000)}connectionId: ${id}\r\n\r\n`, 401],
    ]
    for (const [what, bytes, status] of cases) {
      const raw = await open()
      const handedBefore = s.forwardAuth.handedOver
      raw.send(bytes)
      const [r] = await raw.responses(1)
      assert.equal(r!.status, status, what)
      assert.equal(s.forwardAuth.handedOver, handedBefore + 1, `${what}: answered by node:http`)
    }
  })

  it('trims only spaces and tabs around a value, as llhttp does', async () => {
    // 0xA0 around the id is part of the value for node:http (so the id is malformed), and
    // String#trim would have removed it.
    const raw = await open()
    const handedBefore = s.forwardAuth.handedOver
    raw.send(`GET /wsds/auth HTTP/1.1\r\nHost: a\r\nconnectionId: \xa0${id}\xa0\r\n\r\n` + authRequest(id, 'Connection: close\xa0\r\n'))
    const answers = await raw.responses(2)
    assert.equal(answers[0]!.status, 401)
    assert.equal(answers[1]!.headers.connection, 'keep-alive', '"close\\xa0" is not close')
    assert.equal(s.forwardAuth.handedOver, handedBefore)
  })

  it('answers 503 store-unavailable when the store cannot be read, and 401 once the socket closes', async () => {
    const raw = await open()
    state.down = true
    try {
      raw.send(authRequest('s'.repeat(22)))
      const [r] = await raw.responses(1)
      assert.deepEqual(essence(r!), {
        status: 503,
        body: '{"error":"store-unavailable"}',
        cacheControl: 'no-store',
        id: undefined,
        origin: undefined,
        verdict: undefined,
        retryAfter: '1',
      })
    } finally {
      state.down = false
    }
    const second = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys, keySet: testKeySet.id })
    raw.send(authRequest(second.connectionId))
    assert.equal((await raw.responses(2))[1]!.status, 204)
    second.client.close()
    await second.client.closed
    const closedAt = performance.now()
    for (let n = 3; ; n++) {
      raw.send(authRequest(second.connectionId))
      const answers = await raw.responses(n)
      if (answers[n - 1]!.status === 401) break
      await new Promise((r) => setTimeout(r, 5))
    }
    assert.ok(performance.now() - closedAt < 100, `401 within 100 ms of the close, took ${performance.now() - closedAt} ms`)
  })

  it('stops reading a client that does not read its answers, and answers everything once it does', async () => {
    const raw = await open()
    raw.socket.pause()
    const total = 20_000
    const answeredBefore = s.forwardAuth.answered
    raw.send(authRequest(id).repeat(total))
    await new Promise((r) => setTimeout(r, 300))
    const answeredWhilePaused = s.forwardAuth.answered - answeredBefore
    assert.ok(answeredWhilePaused < total, `answered ${answeredWhilePaused} of ${total} to a client reading nothing`)
    raw.socket.resume()
    const answers = await raw.responses(total, 10_000)
    assert.equal(answers.length, total)
    assert.ok(answers.every((a) => a.status === 204))
  })
})

describe('forward auth fast path: monitor mode', () => {
  let s: TestServer
  after(async () => s?.close())
  it('admits an unknown id with 204 and its verdict', async () => {
    s = await startTestServer({ mode: 'monitor' })
    const raw = await Raw.open(s.port)
    try {
      raw.send(authRequest(UNKNOWN))
      const [r] = await raw.responses(1)
      assert.equal(r!.status, 204)
      assert.equal(r!.headers['x-wsds-verdict'], 'deny:unknown')
      assert.equal(r!.headers['x-wsds-connection-id'], undefined)
      assert.equal(s.front.decisions['deny:unknown'], 1)
    } finally {
      raw.close()
    }
  })
})

describe('forward auth fast path: limits', () => {
  let listener: NetServer
  let fast: FastAuth
  let port: number
  const raws: Raw[] = []
  before(async () => {
    const front = createFront({ authenticator: createAuthenticator({ store: createMemoryStore(), cacheTtlMs: 1000 }) })
    const http = createHttpServer((_req, res) => res.end('node'))
    fast = createFastAuth({ http, front, path: '/wsds/auth', keepAliveTimeoutMs: 400, headersTimeoutMs: 250 })
    listener = createNetServer({ allowHalfOpen: true }, fast.accept)
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
    port = (listener.address() as { port: number }).port
  })
  after(async () => {
    for (const raw of raws) raw.close()
    fast.closeAll()
    await new Promise((r) => listener.close(r))
  })

  it('closes a connection idle for longer than the keep-alive timeout', async () => {
    const raw = await Raw.open(port)
    raws.push(raw)
    raw.send(authRequest(UNKNOWN))
    await raw.responses(1)
    assert.equal(raw.closed, false)
    await eventually(() => raw.closed, 2000, 'the server closes the connection')
  })

  it('answers 408 to a head still incomplete after the headers timeout, however it trickles', async () => {
    const raw = await Raw.open(port)
    raws.push(raw)
    const started = performance.now()
    const head = authRequest(UNKNOWN)
    // One byte every 50 ms keeps the connection busy but never finishes the head in time.
    for (let i = 0; i < 12 && !raw.closed; i++) {
      raw.send(head[i]!)
      await new Promise((r) => setTimeout(r, 50))
    }
    await eventually(() => raw.closed, 2000, 'the server closes the connection')
    assert.match(raw.received, /^HTTP\/1\.1 408 /)
    assert.ok(performance.now() - started < 1000)
  })

  it('answers 408 to a head that stops arriving, at the headers timeout rather than the idle one', async () => {
    const raw = await Raw.open(port)
    raws.push(raw)
    const started = performance.now()
    raw.send('GET /wsds/auth HTTP/1.1\r\nHost: a\r\n')
    await eventually(() => raw.closed, 2000, 'closed')
    assert.match(raw.received, /^HTTP\/1\.1 408 /)
    const took = performance.now() - started
    assert.ok(took >= 240 && took < 390, `408 after ${took} ms (headers timeout 250 ms, idle 400 ms)`)
  })

  it('counts what it answered and the connections it still holds; closeAll ends them', async () => {
    const raw = await Raw.open(port)
    raws.push(raw)
    raw.send(authRequest(UNKNOWN))
    await raw.responses(1)
    assert.ok(fast.stats.open >= 1)
    fast.closeAll()
    await eventually(() => raw.closed, 2000, 'the server closes the connection')
    assert.equal(fast.stats.open, 0)
  })
})

describe('forward auth fast path: shutdown', () => {
  it('close() ends idle keep-alive connections promptly, on the fast path and handed to node:http', async () => {
    const s = await startTestServer()
    const fast = await Raw.open(s.port)
    fast.send(authRequest(UNKNOWN))
    await fast.responses(1)
    const handed = await Raw.open(s.port)
    handed.send('GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n')
    await handed.responses(1)
    assert.equal(s.forwardAuth.open, 1)
    const started = performance.now()
    await s.close()
    assert.ok(performance.now() - started < 1000, `close took ${performance.now() - started} ms`)
    await eventually(() => fast.closed && handed.closed, 2000, 'both connections closed')
  })
})
