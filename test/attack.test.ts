/**
 * The gateway as an attacker sees it: raw frames, odd paths, forged headers, unsafe
 * defaults and log floods. Each case is one finding that must stay fixed.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { checkTarget } from '../src/core/target.ts'
import { createRateLimiter } from '../src/gateway/rate-limit.ts'
import { loadConfig } from '../src/server/config.ts'
import { metricsExposedWithoutToken } from '../src/server/server.ts'
import { FORBIDDEN_ORIGIN, TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { frame, rawUpgrade } from './helpers/raw-ws.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

/** Sends raw bytes as one HTTP/1.1 request; resolves with the status line's code. */
function rawRequest(port: number, text: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk) => (data += chunk))
    socket.on('error', reject)
    socket.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data)
      if (!m) return reject(new Error(`no HTTP answer: ${JSON.stringify(data.slice(0, 80))}`))
      resolve({ status: Number(m[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) })
    })
    socket.write(text)
  })
}

const get = (port: number, target: string, headers: Record<string, string> = {}) =>
  rawRequest(port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`)

describe('close codes on the WebSocket', () => {
  let s: TestServer
  before(async () => {
    s = await startTestServer({ maxPayloadBytes: 1024 })
  })
  after(() => s.close())

  it('closes an endless message of empty fragments with 1009, not 1008', async () => {
    const raw = await rawUpgrade(s.port, '/wsds', TEST_ORIGIN)
    const parts = [frame(0x1, '', false)]
    for (let i = 0; i < 20_000; i++) parts.push(frame(0x0, '', false))
    raw.socket.write(Buffer.concat(parts))
    assert.equal(await raw.closed, 1009)
    raw.socket.destroy()
  })

  it('closes a fragmented message whose parts add up past the size limit with 1009', async () => {
    const raw = await rawUpgrade(s.port, '/wsds', TEST_ORIGIN)
    raw.socket.write(frame(0x1, 'x'.repeat(600), false))
    raw.socket.write(frame(0x0, 'x'.repeat(600), false))
    assert.equal(await raw.closed, 1009)
    raw.socket.destroy()
  })

  it('closes a single frame over the size limit with 1009', async () => {
    const raw = await rawUpgrade(s.port, '/wsds', TEST_ORIGIN)
    raw.socket.write(frame(0x1, 'x'.repeat(5000)))
    assert.equal(await raw.closed, 1009)
    raw.socket.destroy()
  })
})

describe('slow upgrades', () => {
  let s: TestServer
  before(async () => {
    s = await startTestServer()
  })
  after(() => s.close())

  it('answers an upgrade whose headers never finish with 408 within about 10 s, not 98', async () => {
    const started = performance.now()
    const socket = connect(s.port, '127.0.0.1')
    socket.on('error', () => {})
    socket.write(`GET /wsds HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: ${TEST_ORIGIN}\r\n`)
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (c) => (data += c))
    // Keep trickling: a header byte every second does not extend the deadline.
    const trickle = setInterval(() => socket.write('X-A: b\r\n'), 1000)
    await new Promise((resolve) => socket.on('close', resolve))
    clearInterval(trickle)
    const elapsed = performance.now() - started
    assert.match(data, /^HTTP\/1\.1 408/)
    assert.ok(elapsed < 15_000, `closed after ${Math.round(elapsed)} ms`)
    assert.ok(elapsed >= 9_000, `closed too early, after ${Math.round(elapsed)} ms`)
  })
})

describe('canonical request targets', () => {
  it('accepts ordinary origin-form targets and splits path and query untouched', () => {
    assert.deepEqual(checkTarget('/api/greeting?who=Ada'), { ok: true, path: '/api/greeting', query: 'who=Ada' })
    assert.deepEqual(checkTarget('/'), { ok: true, path: '/', query: '' })
    assert.deepEqual(checkTarget('/api/'), { ok: true, path: '/api/', query: '' })
    assert.deepEqual(checkTarget('/a%20b/c.d/..e/%2e%2ex?q=../..%2f'), { ok: true, path: '/a%20b/c.d/..e/%2e%2ex', query: 'q=../..%2f' })
    assert.deepEqual(checkTarget('/files/%E2%82%AC'), { ok: true, path: '/files/%E2%82%AC', query: '' })
  })

  const refused: Array<[string, string]> = [
    ['', 'not-origin-form'],
    ['*', 'not-origin-form'],
    ['http://evil.test/api/x', 'not-origin-form'],
    ['//evil.test/api', 'not-origin-form'],
    ['/api/../admin', 'dot-segment'],
    ['/api/./x', 'dot-segment'],
    ['/api/..', 'dot-segment'],
    ['/api/%2e%2e/admin', 'dot-segment'],
    ['/api/%2E./admin', 'dot-segment'],
    ['/api/.%2E/admin', 'dot-segment'],
    ['/api/%2e', 'dot-segment'],
    ['/api/..?x=1', 'dot-segment'],
    ['/api/..%2fadmin', 'encoded-separator'],
    ['/api%2Fadmin', 'encoded-separator'],
    ['/api/a%5cb', 'encoded-separator'],
    ['/api/a\\b', 'encoded-separator'],
    ['/api//x', 'empty-segment'],
    ['/api/%00', 'bad-percent-encoding'],
    ['/api/%1F', 'bad-percent-encoding'],
    ['/api/%zz', 'bad-percent-encoding'],
    ['/api/%4', 'bad-percent-encoding'],
    ['/api/a b', 'bad-character'],
    ['/api/\u0000', 'bad-character'],
    ['/api/\u00e9', 'bad-character'],
    ['/api/x#frag', 'bad-character'],
    ['/' + 'a'.repeat(9000), 'too-long'],
  ]
  for (const [target, reason] of refused) {
    it(`refuses ${JSON.stringify(target.length > 40 ? target.slice(0, 20) + '...' : target)} as ${reason}`, () => {
      assert.deepEqual(checkTarget(target), { ok: false, reason })
    })
  }

  describe('on the gateway', () => {
    let s: TestServer
    let id: string
    let close: () => Promise<unknown>
    before(async () => {
      s = await startTestServer()
      const h = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      id = h.connectionId
      close = () => h.client.close()
    })
    after(async () => {
      await close()
      await s.close()
    })

    it('admits a verified id on a canonical /api target', async () => {
      assert.equal((await get(s.port, '/api/greeting?who=Ada', { connectionId: id })).status, 200)
    })

    for (const target of ['/api/../admin', '/api/%2e%2e/healthz', '/api/..%2fadmin', '/api%2fgreeting', '/api/a\\b', '/api//greeting', '/x/../metrics', '/api/%00']) {
      it(`answers ${target} with 400 bad-path before routing, even with a verified id`, async () => {
        const r = await get(s.port, target, { connectionId: id })
        assert.equal(r.status, 400)
        assert.equal(r.body, '{"error":"bad-path"}')
      })
    }

    it('answers forward auth 400 bad-path when X-Forwarded-Uri is not canonical, and 204 when it is', async () => {
      const bad = await get(s.port, '/wsds/auth', { connectionId: id, 'X-Forwarded-Method': 'GET', 'X-Forwarded-Uri': '/api/%2E%2E/admin' })
      assert.equal(bad.status, 400)
      assert.equal(bad.body, '{"error":"bad-path"}')
      const good = await get(s.port, '/wsds/auth', { connectionId: id, 'X-Forwarded-Method': 'GET', 'X-Forwarded-Uri': '/api/greeting?who=A' })
      assert.equal(good.status, 204)
    })
  })
})

describe('/api proxy headers', () => {
  let upstream: Server
  let seen: IncomingHttpHeaders[] = []
  let s: TestServer
  let id: string
  let close: () => Promise<unknown>
  before(async () => {
    upstream = createServer((req, res) => {
      seen.push(req.headers)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    s = await startTestServer({ upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` })
    const h = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    id = h.connectionId
    close = () => h.client.close()
  })
  after(async () => {
    await close()
    await s.close()
    await new Promise((r) => upstream.close(r))
  })

  it('sets X-Forwarded-For/-Host/-Proto itself, whatever the client sent', async () => {
    seen = []
    const r = await get(s.port, '/api/x', { connectionId: id, 'X-Forwarded-Host': 'evil.test', 'X-Forwarded-Proto': 'https', 'X-Forwarded-For': '10.9.9.9', Forwarded: 'for=10.9.9.9', 'X-Real-IP': '10.9.9.9' })
    assert.equal(r.status, 200)
    const h = seen[0]!
    assert.equal(h['x-forwarded-host'], '127.0.0.1')
    assert.equal(h['x-forwarded-proto'], 'http')
    assert.equal(h['x-forwarded-for'], '127.0.0.1')
    assert.equal(h.forwarded, undefined)
    assert.equal(h['x-real-ip'], undefined)
  })

  it('drops client-sent x-wsds-* headers in every spelling and sends the authenticator\'s own', async () => {
    seen = []
    const forged = { 'X_WSDS_VERDICT': 'allow', 'x_wsds_connection_id': 'forged', 'X-Wsds-Origin': 'http://evil.test', 'x-WSDS_connection-ID': 'forged2' }
    const r = await get(s.port, '/api/x', { connectionId: id, ...forged })
    assert.equal(r.status, 200)
    const h = seen[0]!
    const names = Object.keys(h).filter((n) => n.replace(/_/g, '-').startsWith('x-wsds-'))
    assert.deepEqual(names.sort(), ['x-wsds-connection-id', 'x-wsds-origin', 'x-wsds-verdict'])
    assert.equal(h['x-wsds-connection-id'], id)
    assert.equal(h['x-wsds-origin'], TEST_ORIGIN)
    assert.equal(h['x-wsds-verdict'], 'allow')
  })

  it('refuses a repeated connectionId header (401) instead of passing "a, b" to the upstream', async () => {
    seen = []
    const r = await rawRequest(s.port, `GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nconnectionId: ${id}\r\nconnectionId: attacker-id\r\n\r\n`)
    assert.equal(r.status, 401)
    assert.equal(seen.length, 0)
  })

  it('passes the upstream the connectionId the authenticator verified', async () => {
    seen = []
    assert.equal((await get(s.port, '/api/x', { connectionId: id })).status, 200)
    assert.equal(seen[0]!.connectionid, id)
  })
})

describe('safe defaults', () => {
  let dir: string
  let keysFile: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'wsds-attack-'))
    keysFile = join(dir, 'keys.json')
    writeFileSync(keysFile, JSON.stringify(testKeySet))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('turns the demo off by default when WSDS_KEYS_FILE is given, and on without it', () => {
    assert.equal(loadConfig({ WSDS_KEYS_FILE: keysFile }).demo, false)
    assert.equal(loadConfig({}).demo, true)
    assert.equal(loadConfig({ WSDS_KEYS_FILE: keysFile, WSDS_DEMO: 'on' }).demo, true)
  })

  it('serves the demo an ephemeral key set of its own when it is turned on with a keys file, and that set verifies', async () => {
    const lines: string[] = []
    const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_KEYS_FILE: keysFile, WSDS_DEMO: 'on', WSDS_RATE_LIMIT: 'off' })
    const s = await startTestServer({ ...base, keySets: base.keySets }, { logger: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }) })
    try {
      const res = await fetch(`${s.url}/demo/config.json`)
      const text = await res.text()
      for (const key of testKeySet.keys) assert.ok(!text.includes(key), 'the demo served a key from WSDS_KEYS_FILE')
      const config = JSON.parse(text) as { keySet: string; keys: string[] }
      assert.notEqual(config.keySet, testKeySet.id)
      assert.equal(s.currentKeySet.id, testKeySet.id, 'the file\'s set stays the current one')
      const h = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: config.keys, keySet: config.keySet })
      await h.client.close()
      assert.ok(lines.some((l) => JSON.parse(l).event === 'demo-with-keys-file'), 'a warning says so at start')
    } finally {
      await s.close()
    }
  })

  it('warns about /metrics without a token only on a non-loopback listener', () => {
    assert.equal(metricsExposedWithoutToken({ host: '0.0.0.0', metricsToken: null }), true)
    assert.equal(metricsExposedWithoutToken({ host: '::', metricsToken: null }), true)
    assert.equal(metricsExposedWithoutToken({ host: '10.0.0.5', metricsToken: null }), true)
    assert.equal(metricsExposedWithoutToken({ host: '0.0.0.0', metricsToken: 't0ken' }), false)
    assert.equal(metricsExposedWithoutToken({ host: '127.0.0.1', metricsToken: null }), false)
    assert.equal(metricsExposedWithoutToken({ host: '::1', metricsToken: null }), false)
    assert.equal(metricsExposedWithoutToken({ host: 'localhost', metricsToken: null }), false)
  })
})

describe('refused-upgrade logs', () => {
  it('logs a flood of refused upgrades with huge Origins in a bounded number of short lines', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) })
    const s = await startTestServer({}, { logger, rateLimiter: createRateLimiter({ perSecond: 50, burst: 100 }) })
    try {
      const origin = 'http://' + 'a'.repeat(15_000) + '.test'
      const statuses = await Promise.all(
        Array.from({ length: 300 }, () =>
          rawRequest(s.port, `GET /wsds HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: ${origin}\r\n\r\n`).then((r) => r.status),
        ),
      )
      assert.ok(statuses.every((st) => st === 403 || st === 429), `statuses: ${[...new Set(statuses)].join(',')}`)
      assert.ok(statuses.includes(429), 'the rate limiter refused part of the flood')
      const refusals = lines.filter((l) => l.includes('upgrade-refused'))
      const bytes = refusals.reduce((n, l) => n + l.length, 0)
      assert.ok(refusals.length <= 30, `${refusals.length} refusal lines`)
      assert.ok(bytes < 30 * 1024, `${bytes} bytes of refusal logs`)
      for (const l of refusals) assert.ok(String(JSON.parse(l).origin).length <= 230, 'the origin is truncated')
      assert.ok(!refusals.some((l) => JSON.parse(l).reason === 'rate-limit'), 'rate-limited attempts are not logged one by one')
    } finally {
      await s.close()
    }
  })

  it('still logs a single refused upgrade with its origin', async () => {
    const lines: string[] = []
    const s = await startTestServer({}, { logger: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }) })
    try {
      const r = await rawRequest(s.port, `GET /wsds HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: ${FORBIDDEN_ORIGIN}\r\n\r\n`)
      assert.equal(r.status, 403)
      const line = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.event === 'upgrade-refused')
      assert.equal(line?.origin, FORBIDDEN_ORIGIN)
    } finally {
      await s.close()
    }
  })
})
