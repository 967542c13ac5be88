/**
 * The browser SDK in Node, with `ws`'s WebSocket injected, against a scripted gateway that
 * runs the real challenge core. The fake keeps to PROTOCOL.md closely enough for the client,
 * and lets a test force outcomes (wrong answers, stale key sets, re-challenges, drops).
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, beforeEach, describe, it } from 'node:test'
import WebSocket, { WebSocketServer } from 'ws'
import { connect, type CloseInfo, type ConnectOptions, type WsdsSession } from '../src/client/index.ts'
import { checkAnswer, createChallenge } from '../src/core/challenge.ts'
import { isWsdsError } from '../src/core/errors.ts'
import { generateKeySet, type KeySet } from '../src/core/keyset.ts'
import { parseClientMessage, type ClientMessage, type RejectReason, type ServerMessage } from '../src/core/protocol.ts'
import { createRandomPool } from '../src/core/random.ts'

const HOST = '127.0.0.1'
const random = createRandomPool()
const keySet = generateKeySet(random)

interface GatewayOptions {
  /** Key set ids the gateway accepts in hello (default: only `keySet`). */
  accepted?: string[]
  /** Reject the answer on the n-th connection (1-based) with this reason instead of checking it. */
  rejectAnswer?: (connectionNumber: number) => RejectReason | null
}

class FakeConnection {
  readonly id = `c${Math.random().toString(36).slice(2, 12)}`
  readonly received: ClientMessage[] = []
  verified = false
  #expected = new Map<string, string>()
  #waiters: Array<() => void> = []

  constructor(
    readonly ws: WebSocket,
    readonly number: number,
    private readonly gateway: FakeGateway,
  ) {
    ws.on('message', (data) => this.#onMessage(String(data)))
  }

  send(message: ServerMessage | Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message))
  }

  challenge(): string {
    const token = `t${Math.random().toString(36).slice(2)}`
    const { code, expected } = createChallenge({ keySet: this.gateway.keySet, hostname: HOST, random })
    this.#expected.set(token, expected)
    this.send({ type: 'challenge', token, code, expiresInMs: 10_000 })
    return token
  }

  reject(reason: RejectReason): void {
    this.send({ type: 'rejected', reason })
    this.ws.close(reason === 'timeout' ? 4408 : reason === 'unsupported-version' ? 4400 : 4401, reason)
  }

  /** Resolves once a message matching `pred` has been received (already or later). */
  async waitFor(pred: (m: ClientMessage) => boolean): Promise<ClientMessage> {
    for (;;) {
      const found = this.received.find(pred)
      if (found) return found
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
  }

  #onMessage(text: string): void {
    const parsed = parseClientMessage(text)
    assert.ok(parsed.ok, `client sent a malformed frame: ${text}`)
    const message = parsed.message
    this.received.push(message)
    for (const wake of this.#waiters.splice(0)) wake()
    switch (message.action) {
      case 'hello': {
        this.gateway.hellos.push(message)
        this.send({ type: 'connection', connectionId: this.id })
        const accepted = this.gateway.options.accepted ?? [this.gateway.keySet.id]
        if (message.keySet !== undefined && !accepted.includes(message.keySet)) return this.reject('stale-keyset')
        this.challenge()
        return
      }
      case 'answer': {
        const expected = this.#expected.get(message.token)
        this.#expected.delete(message.token)
        if (expected === undefined) return this.reject('bad-token')
        const forced = this.gateway.options.rejectAnswer?.(this.number) ?? null
        if (forced) return this.reject(forced)
        const check = checkAnswer(expected, message.result)
        if (!check.ok) return this.reject(check.reason)
        this.verified = true
        this.send({ type: 'verified', connectionId: this.id })
        return
      }
      case 'ping':
        this.send({ type: 'pong' })
    }
  }
}

class FakeGateway {
  readonly wss: WebSocketServer
  readonly connections: FakeConnection[] = []
  readonly hellos: ClientMessage[] = []
  #waiters: Array<() => void> = []

  constructor(
    readonly keySet: KeySet,
    readonly options: GatewayOptions,
  ) {
    this.wss = new WebSocketServer({ host: HOST, port: 0, path: '/wsds' })
    this.wss.on('connection', (ws) => {
      this.connections.push(new FakeConnection(ws, this.connections.length + 1, this))
      for (const wake of this.#waiters.splice(0)) wake()
    })
  }

  get url(): string {
    return `ws://${HOST}:${(this.wss.address() as AddressInfo).port}/wsds`
  }

  /** The n-th connection (1-based), once it exists. */
  async connection(n: number): Promise<FakeConnection> {
    while (this.connections.length < n) await new Promise<void>((resolve) => this.#waiters.push(resolve))
    return this.connections[n - 1]!
  }

  async close(): Promise<void> {
    for (const client of this.wss.clients) client.terminate()
    await new Promise<void>((resolve) => this.wss.close(() => resolve()))
  }
}

async function startGateway(options: GatewayOptions = {}): Promise<FakeGateway> {
  const gateway = new FakeGateway(keySet, options)
  await once(gateway.wss, 'listening')
  return gateway
}

/** Resolves with the next emission of `event`. */
function next<T>(session: WsdsSession, event: 'verified' | 'rejected' | 'closed' | 'connection'): Promise<T> {
  return new Promise((resolve) => {
    const off = session.on(event, ((arg: T) => {
      off()
      resolve(arg)
    }) as never)
  })
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// A broken behaviour mostly shows as an event that never comes: fail fast instead of hanging.
const T = { timeout: 3000 }

// Backoff small enough that reconnect tests take milliseconds.
const FAST = { minDelayMs: 5, maxDelayMs: 20 }

let gateway: FakeGateway | null = null
const sessions: WsdsSession[] = []
const g = globalThis as { location?: unknown; fetch: typeof fetch }

function open(options: Partial<ConnectOptions> = {}): WsdsSession {
  const session = connect({
    url: options.url ?? gateway!.url,
    keys: keySet.keys,
    keySet: keySet.id,
    WebSocket,
    pingIntervalMs: 0,
    reconnect: FAST,
    ...options,
  })
  sessions.push(session)
  return session
}

beforeEach(() => {
  // The challenge proves the page's hostname; in Node the test plays the page.
  g.location = { hostname: HOST, href: `http://${HOST}/app/` }
})

afterEach(async () => {
  for (const session of sessions.splice(0)) session.close()
  await gateway?.close()
  gateway = null
  delete g.location
})

describe('connect()', () => {
  it('sends hello v1 with the key set, answers the challenge and resolves ready with the connectionId', T, async () => {
    gateway = await startGateway()
    const session = open({ bind: false })
    const verifiedEvent = next<string>(session, 'verified')
    const id = await session.ready
    const conn = await gateway.connection(1)
    assert.equal(id, conn.id)
    assert.equal(await verifiedEvent, conn.id)
    assert.equal(conn.verified, true)
    assert.equal(session.verified, true)
    assert.equal(session.connectionId, conn.id)
    assert.deepEqual(gateway.hellos, [{ action: 'hello', v: 1, keySet: keySet.id, forms: ['program', 'code'] }])
  })

  it('omits keySet from hello when none is given', T, async () => {
    gateway = await startGateway()
    const session = open({ keySet: undefined, bind: false })
    await session.ready
    assert.deepEqual(gateway.hellos, [{ action: 'hello', v: 1, forms: ['program', 'code'] }])
  })

  it('resolves a relative url against location, http -> ws', T, async () => {
    gateway = await startGateway()
    const port = (gateway.wss.address() as AddressInfo).port
    g.location = { hostname: HOST, href: `http://${HOST}:${port}/some/page#frag` }
    const session = open({ url: '/wsds' })
    assert.equal(await session.ready, (await gateway.connection(1)).id)
  })

  it('ignores unknown and malformed server frames', T, async () => {
    gateway = await startGateway()
    const session = open()
    const conn = await gateway.connection(1)
    conn.ws.send('not json')
    conn.ws.send('[1,2]')
    conn.send({ type: 'mystery', connectionId: 'x' })
    conn.send({ type: 'verified' }) // no connectionId: not a valid verified frame
    assert.equal(await session.ready, conn.id)
  })

  it('answers challenges whose function returns a Promise, through the evaluate hook', T, async () => {
    gateway = await startGateway()
    const codes: string[] = []
    const session = open({
      evaluate: (code) => {
        codes.push(code)
        const fn = new Function(`return (${code})`)() as (input: { keys: readonly string[] }) => unknown
        return async (input) => {
          await delay(1)
          return fn(input)
        }
      },
    })
    await session.ready
    assert.equal(codes.length, 1)
    assert.match(codes[0]!, /^function\(/)
  })

  it('sends keep-alive pings at pingIntervalMs', T, async () => {
    gateway = await startGateway()
    open({ pingIntervalMs: 10 })
    const conn = await gateway.connection(1)
    await conn.waitFor((m) => m.action === 'ping')
  })

  it('throws ERR_CONFIG for bad options', T, () => {
    const bad: Array<Partial<ConnectOptions>> = [
      { keys: [] },
      { url: 'http//no scheme' },
      { url: 'ftp://example.com/wsds' },
      { header: 'bad header' },
      { pingIntervalMs: -1 },
      { reconnect: { minDelayMs: 100, maxDelayMs: 10 } },
      { WebSocket: undefined },
    ]
    const saved = (globalThis as { WebSocket?: unknown }).WebSocket
    delete (globalThis as { WebSocket?: unknown }).WebSocket
    delete g.location
    try {
      for (const options of bad) {
        assert.throws(
          () => connect({ url: 'ws://127.0.0.1:1/wsds', keys: keySet.keys, WebSocket, ...options }),
          (err: unknown) => isWsdsError(err, 'ERR_CONFIG'),
          JSON.stringify(options),
        )
      }
    } finally {
      if (saved !== undefined) (globalThis as { WebSocket?: unknown }).WebSocket = saved
    }
  })
})

describe('session.fetch()', () => {
  let server: Server
  let seen: IncomingHttpHeaders[]
  let base: string

  beforeEach(async () => {
    seen = []
    server = createServer((req, res) => {
      seen.push(req.headers)
      res.end('ok')
    })
    server.listen(0, HOST)
    await once(server, 'listening')
    base = `http://${HOST}:${(server.address() as AddressInfo).port}`
  })

  afterEach(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  it('waits for verification, then adds the connectionId header and keeps the caller\'s headers', T, async () => {
    gateway = await startGateway()
    const session = open()
    // Called before the socket has even opened: it must wait, not send an empty header.
    const res = await session.fetch(`${base}/x`, { headers: { 'x-app': 'demo' } })
    assert.equal(await res.text(), 'ok')
    const conn = await gateway.connection(1)
    assert.equal(conn.verified, true)
    assert.equal(seen[0]!.connectionid, conn.id)
    assert.equal(seen[0]!['x-app'], 'demo')
  })

  it('does not hand out the id between connection and verified', T, async () => {
    gateway = await startGateway()
    const verifiedAtRequest: boolean[] = []
    server.removeAllListeners('request')
    server.on('request', (req, res) => {
      const conn = gateway!.connections.find((c) => c.id === req.headers.connectionid)
      verifiedAtRequest.push(conn?.verified ?? false)
      res.end('ok')
    })
    // A slow answer leaves a window in which the id is known but not yet admitted.
    const session = open({
      evaluate: (code) => {
        const fn = new Function(`return (${code})`)() as (input: { keys: readonly string[] }) => unknown
        return async (input) => {
          await delay(30)
          return fn(input)
        }
      },
    })
    await next(session, 'connection')
    await (await session.fetch(`${base}/early`)).text()
    assert.deepEqual(verifiedAtRequest, [true])
  })

  it('uses a custom header name, and keeps the headers of a Request', T, async () => {
    gateway = await startGateway()
    const session = open({ header: 'x-wsds-id' })
    const id = await session.ready
    await session.fetch(new Request(`${base}/y`, { headers: { 'x-app': 'req' } }))
    assert.equal(seen[0]!['x-wsds-id'], id)
    assert.equal(seen[0]!['x-app'], 'req')
    assert.equal(seen[0]!.connectionid, undefined)
  })

  it('rejects with the final error once the session gives up, and honours an abort while waiting', T, async () => {
    gateway = await startGateway({ accepted: [] })
    const session = open()
    const controller = new AbortController()
    const aborted = session.fetch(`${base}/z`, { signal: controller.signal })
    const pending = session.fetch(`${base}/z`)
    controller.abort(new Error('gave up waiting'))
    await assert.rejects(aborted, /gave up waiting/)
    await assert.rejects(pending, (err: unknown) => isWsdsError(err, 'stale-keyset'))
    await assert.rejects(session.fetch(`${base}/z`), (err: unknown) => isWsdsError(err, 'stale-keyset'))
    assert.equal(seen.length, 0)
  })
})

describe('re-challenges', () => {
  it('answers a challenge on a verified connection and stays verified meanwhile', T, async () => {
    gateway = await startGateway()
    const session = open()
    const id = await session.ready
    const conn = await gateway.connection(1)
    conn.verified = false
    const token = conn.challenge()
    const reverified = next<string>(session, 'verified')
    assert.equal(session.verified, true)
    assert.equal(await reverified, id)
    const answer = await conn.waitFor((m) => m.action === 'answer' && m.token === token)
    assert.equal(answer.action, 'answer')
    assert.equal(conn.verified, true)
    assert.equal(session.verified, true)
    assert.equal(session.connectionId, id)
    assert.equal(gateway.connections.length, 1)
  })

  it('answers only the latest of two overlapping challenges', T, async () => {
    gateway = await startGateway()
    let slow = true
    const session = open({
      evaluate: (code) => {
        const fn = new Function(`return (${code})`)() as (input: { keys: readonly string[] }) => unknown
        // The first evaluation is slow, so the second challenge overtakes it.
        const wait = slow ? 30 : 0
        slow = false
        return async (input) => {
          await delay(wait)
          return fn(input)
        }
      },
    })
    const conn = await gateway.connection(1)
    await conn.waitFor((m) => m.action === 'hello')
    conn.challenge()
    assert.equal(await session.ready, conn.id)
    await delay(50)
    const answers = conn.received.filter((m) => m.action === 'answer')
    assert.equal(answers.length, 1, 'a stale answer would be bad-token')
  })
})

describe('rejection', () => {
  it('wrong-answer: emits rejected, rejects ready with code wrong-answer, and does not reconnect', T, async () => {
    gateway = await startGateway({ rejectAnswer: () => 'wrong-answer' })
    const session = open()
    const rejected = next<string>(session, 'rejected')
    const closed = next<CloseInfo>(session, 'closed')
    await assert.rejects(session.ready, (err: unknown) => isWsdsError(err, 'wrong-answer'))
    assert.equal(await rejected, 'wrong-answer')
    assert.equal((await closed).willReconnect, false)
    await delay(FAST.maxDelayMs * 3)
    assert.equal(gateway.connections.length, 1)
    assert.equal(session.verified, false)
  })

  it('a real wrong answer (keys that are not the set\'s) is rejected the same way', T, async () => {
    gateway = await startGateway()
    const other = generateKeySet(random)
    const session = open({ keys: other.keys })
    await assert.rejects(session.ready, (err: unknown) => isWsdsError(err, 'wrong-answer'))
    await delay(FAST.maxDelayMs * 3)
    assert.equal(gateway.connections.length, 1)
  })

  it('stale-keyset: rejects ready with code stale-keyset, and does not reconnect', T, async () => {
    gateway = await startGateway({ accepted: ['ks-newer'] })
    const session = open()
    const closed = next<CloseInfo>(session, 'closed')
    await assert.rejects(session.ready, (err: unknown) => isWsdsError(err, 'stale-keyset'))
    const info = await closed
    assert.equal(info.willReconnect, false)
    assert.equal(info.code, 4401)
    await delay(FAST.maxDelayMs * 3)
    assert.equal(gateway.connections.length, 1)
    assert.equal(gateway.connections[0]!.received.some((m) => m.action === 'answer'), false)
  })

  it('timeout is transient: reconnects and verifies on the next connection', T, async () => {
    gateway = await startGateway({ rejectAnswer: (n) => (n === 1 ? 'timeout' : null) })
    const session = open()
    const first = await next<string>(session, 'rejected')
    assert.equal(first, 'timeout')
    const id = await session.ready
    assert.equal(id, (await gateway.connection(2)).id)
  })

  it('with reconnect off, a timeout rejects ready with code timeout', T, async () => {
    gateway = await startGateway({ rejectAnswer: () => 'timeout' })
    const session = open({ reconnect: false })
    await assert.rejects(session.ready, (err: unknown) => isWsdsError(err, 'timeout'))
    assert.equal(gateway.connections.length, 1)
  })

  it('rejects ready with ERR_CONNECT when the gateway cannot be reached and attempts run out', T, async () => {
    gateway = await startGateway()
    const url = gateway.url
    await gateway.close()
    gateway = null
    const closes: CloseInfo[] = []
    const session = open({ url, reconnect: { ...FAST, maxAttempts: 2 } })
    session.on('closed', (info) => void closes.push(info))
    await assert.rejects(session.ready, (err: unknown) => isWsdsError(err, 'ERR_CONNECT'))
    assert.deepEqual(
      closes.map((c) => c.willReconnect),
      [true, true, false],
    )
  })
})

describe('reconnecting', () => {
  it('after an unexpected drop, reconnects with a new id and verifies again', T, async () => {
    gateway = await startGateway()
    const session = open()
    const firstId = await session.ready
    const closed = next<CloseInfo>(session, 'closed')
    const reverified = next<string>(session, 'verified')
    ;(await gateway.connection(1)).ws.terminate()
    const info = await closed
    assert.equal(info.willReconnect, true)
    assert.equal(session.verified, false)
    const secondId = await reverified
    const conn2 = await gateway.connection(2)
    assert.equal(secondId, conn2.id)
    assert.notEqual(secondId, firstId)
    assert.equal(session.connectionId, secondId)
    assert.equal(session.verified, true)
    assert.equal(await session.ready, firstId, 'ready keeps its first value')
  })

  it('counts maxAttempts from the last verification, not from the start', T, async () => {
    gateway = await startGateway()
    const session = open({ reconnect: { ...FAST, maxAttempts: 1 } })
    for (let n = 1; n <= 3; n++) {
      const verified = n === 1 ? session.ready : next<string>(session, 'verified')
      if (n > 1) (await gateway.connection(n - 1)).ws.terminate()
      assert.equal(await verified, (await gateway.connection(n)).id)
    }
  })

  it('close() closes with 1000 and stops reconnecting', T, async () => {
    gateway = await startGateway()
    const session = open()
    await session.ready
    const conn = await gateway.connection(1)
    const serverSaw = once(conn.ws, 'close')
    const closed = next<CloseInfo>(session, 'closed')
    session.close()
    assert.equal(session.verified, false)
    const [code] = (await serverSaw) as [number]
    assert.equal(code, 1000)
    assert.equal((await closed).willReconnect, false)
    await delay(FAST.maxDelayMs * 3)
    assert.equal(gateway.connections.length, 1)
  })

  it('close() during the backoff cancels the pending reconnect', T, async () => {
    gateway = await startGateway()
    const session = open({ reconnect: { minDelayMs: 40, maxDelayMs: 40 } })
    await session.ready
    const closed = next<CloseInfo>(session, 'closed')
    ;(await gateway.connection(1)).ws.terminate()
    assert.equal((await closed).willReconnect, true)
    session.close()
    await delay(100)
    assert.equal(gateway.connections.length, 1)
  })

  it('close() before verification rejects ready with ERR_CLOSED', T, async () => {
    gateway = await startGateway()
    const session = open()
    await next(session, 'connection')
    session.close()
    await assert.rejects(session.ready, (err: unknown) => isWsdsError(err, 'ERR_CLOSED'))
    await delay(FAST.maxDelayMs * 3)
    assert.equal(gateway.connections.length, 1)
  })
})

describe('listeners', () => {
  it('a throwing listener is reported, and neither the socket nor other listeners are affected', T, async () => {
    gateway = await startGateway()
    const reported: unknown[] = []
    const originalError = console.error
    console.error = (err: unknown) => void reported.push(err)
    try {
      const session = open()
      let others = 0
      session.on('connection', () => {
        throw new Error('listener bug')
      })
      session.on('verified', () => {
        throw new Error('listener bug')
      })
      session.on('verified', () => void others++)
      const id = await session.ready
      assert.equal(id, (await gateway.connection(1)).id)
      assert.equal(others, 1)
      assert.equal(session.verified, true)
      assert.equal(reported.length, 2)
    } finally {
      console.error = originalError
    }
  })

  it('on() returns an unsubscribe function', T, async () => {
    gateway = await startGateway()
    const session = open()
    let calls = 0
    const off = session.on('verified', () => void calls++)
    off()
    await session.ready
    assert.equal(calls, 0)
  })
})
