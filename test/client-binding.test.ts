/**
 * The SDK's request binding against the real gateway, in Node (which has WebCrypto): it binds
 * by itself, signs session.fetch, session.sign gives other clients the header, reconnects bind
 * again, and `required` refuses a session that cannot bind.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'
import WebSocket from 'ws'
import { connect, type ConnectOptions, type WsdsSession } from '../src/client/index.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'

const g = globalThis as { location?: unknown }
// ws sends no Origin by itself; a browser always does.
class PageSocket extends WebSocket {
  static last: PageSocket | null = null
  constructor(url: string) {
    super(url, { origin: TEST_ORIGIN })
    PageSocket.last = this
  }
}

describe('SDK request binding', () => {
  let s: TestServer
  let required: TestServer
  const sessions: WsdsSession[] = []
  const open = (server: TestServer, options: Partial<ConnectOptions> = {}) => {
    const session = connect({ url: server.wsUrl, keys: testKeySet.keys, keySet: testKeySet.id, WebSocket: PageSocket, pingIntervalMs: 0, ...options })
    sessions.push(session)
    return session
  }
  before(async () => {
    ;[s, required] = await Promise.all([startTestServer(), startTestServer({ binding: 'required' })])
  })
  after(async () => {
    await Promise.all([s?.close(), required?.close()])
  })
  beforeEach(() => (g.location = { hostname: new URL(TEST_ORIGIN).hostname, href: `${TEST_ORIGIN}/app/` }))
  afterEach(() => {
    for (const session of sessions.splice(0)) session.close()
    delete g.location
  })

  it('binds by itself and signs every session.fetch: the id alone is refused', async () => {
    const session = open(s)
    const id = await session.ready
    const res = await session.fetch(`${s.url}/api/greeting?who=Ada%20L`)
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { greeting: 'Hello, Ada L!' })
    const post = await session.fetch(new Request(`${s.url}/api/greeting`, { method: 'post' }))
    assert.notEqual(post.status, 401, 'a Request with a lower-case method is signed as fetch sends it')
    await post.arrayBuffer()
    assert.equal((await fetch(`${s.url}/api/greeting?who=Ada%20L`, { headers: { connectionId: id } })).status, 401)
  })

  it('session.sign gives the header for another HTTP client, for that method and target only', async () => {
    const session = open(s)
    const id = await session.ready
    const header = await session.sign('get', `${s.url}/api/greeting?who=x#fragment`)
    assert.match(header ?? '', /^t=\d+, s=[A-Za-z0-9_-]{43}$/)
    const ok = await fetch(`${s.url}/api/greeting?who=x`, { headers: { connectionId: id, 'WSDS-Signature': header! } })
    assert.equal(ok.status, 200)
    const other = await fetch(`${s.url}/api/greeting?who=y`, { headers: { connectionId: id, 'WSDS-Signature': header! } })
    assert.equal(other.status, 401)
  })

  it('binds again after a reconnect', async () => {
    const session = open(s, { reconnect: { minDelayMs: 10, maxDelayMs: 20 } })
    const first = await session.ready
    const reverified = new Promise<string>((resolve) => session.on('verified', (id) => id !== first && resolve(id)))
    // The network drops the socket: the SDK reconnects, binds with a fresh key, verifies a new id.
    PageSocket.last!.terminate()
    const second = await reverified
    assert.notEqual(second, first)
    const res = await session.fetch(`${s.url}/api/greeting`)
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    assert.equal((await fetch(`${s.url}/api/greeting`, { headers: { connectionId: second } })).status, 401, 'the new id is bound too')
  })

  it('an unbound session is refused by a gateway that requires binding, with binding-required', async () => {
    const session = open(required, { bind: false, reconnect: false })
    await assert.rejects(session.ready, { code: 'binding-required' })
  })

  it('a session that binds verifies where binding is required', async () => {
    const session = open(required)
    const id = await session.ready
    assert.equal((await session.fetch(`${required.url}/api/greeting`)).status, 200)
    assert.equal(typeof id, 'string')
  })
})

describe('SDK size', () => {
  it('stays within 5 KB minified and gzipped, binding included; the proof-of-work solver is a chunk of its own', async () => {
    // Split as Vite and Rollup split by default: the entry is what a page loads to verify;
    // the solver's chunk is fetched only when a challenge asks for work.
    const out = await build({
      entryPoints: [new URL('../src/client/index.ts', import.meta.url).pathname],
      bundle: true,
      minify: true,
      format: 'esm',
      splitting: true,
      outdir: '/virtual',
      write: false,
    })
    const [entry, ...chunks] = out.outputFiles.sort((a, b) => Number(b.path.endsWith('/index.js')) - Number(a.path.endsWith('/index.js')))
    const gz = gzipSync(entry!.contents, { level: 9 }).length
    assert.ok(entry!.path.endsWith('/index.js'))
    assert.equal(chunks.length, 1, 'one on-demand chunk: the proof-of-work solver')
    assert.ok(gz <= 5 * 1024, `${gz} bytes`)
  })
})

