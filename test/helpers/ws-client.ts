/**
 * A scripted protocol client for tests and benchmarks: a real `ws` socket that queues every
 * server frame so a test can await them in order, plus the answer computation a browser
 * page would do (evaluate the challenge source with the keys and a hostname).
 */
import WebSocket from 'ws'
import { decodeProgram, runProgram } from '../../src/core/program.ts'
import type { ChallengeMessage, ServerMessage } from '../../src/core/protocol.ts'
import { htmlTreeSignature } from '../../src/engine/parse5.ts'
import { NodeDOMParser } from './html-dom.ts'

export interface OpenOptions {
  origin?: string
  headers?: Record<string, string>
}

export interface Closed {
  code: number
  reason: string
}

/** Opens a socket; resolves on open, rejects with the HTTP status when the upgrade is refused. */
export function openSocket(url: string, options: OpenOptions = {}): Promise<TestClient> {
  return new Promise((resolve, reject) => {
    const headers = { ...options.headers }
    const ws = new WebSocket(url, { headers, origin: options.origin, perMessageDeflate: false })
    const client = new TestClient(ws)
    ws.once('open', () => resolve(client))
    ws.once('unexpected-response', (_req, res) => {
      reject(Object.assign(new Error(`upgrade refused with ${res.statusCode}`), { status: res.statusCode }))
      res.resume()
      ws.terminate()
    })
    ws.once('error', (err) => reject(err))
  })
}

export class TestClient {
  readonly ws: WebSocket
  readonly closed: Promise<Closed>
  #queue: ServerMessage[] = []
  #waiters: Array<(m: ServerMessage | null) => void> = []
  #ended = false

  constructor(ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data, isBinary) => {
      const message = JSON.parse(isBinary ? '{}' : data.toString()) as ServerMessage
      const waiter = this.#waiters.shift()
      if (waiter) waiter(message)
      else this.#queue.push(message)
    })
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.#ended = true
        for (const w of this.#waiters.splice(0)) w(null)
        resolve({ code, reason: reason.toString() })
      })
    })
    ws.on('error', () => {})
  }

  /** Next server frame; null when the socket closed first. */
  next(timeoutMs = 5000): Promise<ServerMessage | null> {
    const queued = this.#queue.shift()
    if (queued) return Promise.resolve(queued)
    if (this.#ended) return Promise.resolve(null)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs)
      this.#waiters.push((m) => {
        clearTimeout(timer)
        resolve(m)
      })
    })
  }

  /** Next frame, asserting its type. */
  async expect<T extends ServerMessage['type']>(type: T, timeoutMs?: number): Promise<Extract<ServerMessage, { type: T }>> {
    const message = await this.next(timeoutMs)
    if (message === null) throw new Error(`expected ${type}, socket closed`)
    if (message.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(message)}`)
    return message as Extract<ServerMessage, { type: T }>
  }

  send(value: unknown): void {
    this.ws.send(typeof value === 'string' ? value : JSON.stringify(value))
  }

  close(code = 1000): Promise<Closed> {
    this.ws.close(code)
    return this.closed
  }
}

export interface SolveOptions {
  /** Give the challenge an HTML parser (parse5), as a browser page has (default true); false answers without the engine part. */
  dom?: boolean
}

/** Runs a challenge, in either form, the way a page on `hostname` would. */
export async function solve(challenge: ChallengeMessage, keys: readonly string[], hostname: string, options: SolveOptions = {}): Promise<unknown> {
  const dom = options.dom ?? true
  if (challenge.form === 'program') {
    const decoded = decodeProgram(challenge.program, keys.length)
    if (decoded === null) throw new Error('malformed program challenge')
    const engine = decoded.program.engine
    return runProgram(decoded.program, keys, decoded.nonce, hostname, engine && dom ? htmlTreeSignature(engine.html) : null)
  }
  const fn = new Function('location', 'DOMParser', `return (${challenge.code})`)({ hostname }, dom ? NodeDOMParser : undefined) as (input: {
    keys: readonly string[]
  }) => unknown
  return await fn({ keys })
}

export interface HandshakeResult {
  client: TestClient
  connectionId: string
}

/** The whole happy path: hello, connection, challenge, answer, verified. */
export async function verifiedHandshake(
  url: string,
  opts: { origin: string; keys: readonly string[]; keySet?: string; hostname?: string; forms?: string[] },
): Promise<HandshakeResult> {
  const client = await openSocket(url, { origin: opts.origin })
  const hello: Record<string, unknown> = { action: 'hello', v: 1 }
  if (opts.keySet !== undefined) hello.keySet = opts.keySet
  if (opts.forms !== undefined) hello.forms = opts.forms
  client.send(hello)
  const connection = await client.expect('connection')
  const challenge = await client.expect('challenge')
  const result = await solve(challenge, opts.keys, opts.hostname ?? new URL(opts.origin).hostname)
  client.send({ action: 'answer', token: challenge.token, result })
  const verified = await client.expect('verified')
  if (verified.connectionId !== connection.connectionId) throw new Error('verified id differs from connection id')
  return { client, connectionId: connection.connectionId }
}
