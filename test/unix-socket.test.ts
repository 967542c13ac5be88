/**
 * WSDS_SOCKET: the gateway on a Unix domain socket as well as its TCP port, for a reverse
 * proxy on the same host (test/proxies.test.ts runs nginx and Caddy through it).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { isWsdsError } from '../src/core/errors.ts'
import { loadConfig } from '../src/server/config.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One HTTP request over the Unix socket. */
function overSocket(socketPath: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // A connection of its own per request: no agent keeps sockets open between tests.
    const req = request({ socketPath, path, headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

const unknownId = () => 'u'.repeat(32)

describe('WSDS_SOCKET: the gateway on a Unix socket too', () => {
  let dir: string
  let path: string
  let s: TestServer
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wsds-sock-'))
    path = join(dir, 'gateway.sock')
    s = await startTestServer({ socketPath: path, socketMode: 0o660 })
  })
  after(async () => {
    await s?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('creates the socket file with the configured permissions', () => {
    const stat = lstatSync(path)
    assert.ok(stat.isSocket())
    assert.equal(stat.mode & 0o777, 0o660)
  })

  it('verifies a WebSocket over the socket and answers forward auth on it, until the socket closes', async () => {
    const { client, connectionId } = await verifiedHandshake(`ws+unix:${path}:/wsds`, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    const admitted = await overSocket(path, '/wsds/auth', { connectionId })
    assert.equal(admitted.status, 204)
    assert.equal(admitted.headers['x-wsds-connection-id'], connectionId)
    assert.equal(admitted.headers['x-wsds-origin'], TEST_ORIGIN)
    assert.equal(admitted.headers['x-wsds-verdict'], 'allow')
    // The TCP port serves the same gateway: the same id is admitted there.
    assert.equal((await fetch(`${s.url}/wsds/auth`, { headers: { connectionId } })).status, 204)
    const refused = await overSocket(path, '/wsds/auth', { connectionId: unknownId() })
    assert.equal(refused.status, 401)
    assert.equal(refused.body, '{"error":"unauthorized"}')
    await client.close()
    await eventually(async () => (await overSocket(path, '/wsds/auth', { connectionId })).status === 401, 100, '401 over the socket after close')
  })

  it('serves the protected API and /healthz over the socket', async () => {
    assert.equal((await overSocket(path, '/api/greeting')).status, 401)
    const health = await overSocket(path, '/healthz')
    assert.equal(health.status, 200)
    assert.equal(JSON.parse(health.body).status, 'ok')
  })
})

describe('WSDS_SOCKET: the socket file', () => {
  let dir: string
  before(() => (dir = mkdtempSync(join(tmpdir(), 'wsds-sock-'))))
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('is removed when the gateway closes', async () => {
    const path = join(dir, 'closes.sock')
    const s = await startTestServer({ socketPath: path, socketMode: 0o600 })
    assert.equal(lstatSync(path).mode & 0o777, 0o600)
    await s.close()
    assert.throws(() => lstatSync(path), { code: 'ENOENT' })
  })

  it('replaces a socket file left by a process that was killed', async () => {
    const path = join(dir, 'stale.sock')
    // A listener killed with SIGKILL leaves its socket file behind, with nobody on it.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`])
    await new Promise((resolve) => child.once('exit', resolve))
    assert.ok(lstatSync(path).isSocket(), 'stale socket file left')
    const s = await startTestServer({ socketPath: path, socketMode: 0o660 })
    try {
      assert.equal((await overSocket(path, '/healthz')).status, 200)
    } finally {
      await s.close()
    }
  })

  it('refuses a path another process listens on, and leaves that listener alone', async () => {
    const path = join(dir, 'taken.sock')
    const other = createServer((socket) => {
      // The gateway's probe connects and hangs up at once.
      socket.on('error', () => {})
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nother')
    })
    await new Promise<void>((resolve) => other.listen(path, resolve))
    try {
      await assert.rejects(startTestServer({ socketPath: path, socketMode: 0o660 }), (err: unknown) => {
        assert.ok(isWsdsError(err, 'ERR_CONFIG'))
        assert.match((err as Error).message, /another process is listening/)
        return true
      })
      assert.equal((await overSocket(path, '/')).body, 'other')
    } finally {
      // Not waiting for its callback, which waits for every connection it accepted to end.
      other.close()
    }
  })

  it('refuses a path that is not a socket, and does not remove the file', async () => {
    const path = join(dir, 'regular-file')
    writeFileSync(path, 'keep me')
    await assert.rejects(startTestServer({ socketPath: path, socketMode: 0o660 }), (err: unknown) => {
      assert.ok(isWsdsError(err, 'ERR_CONFIG'))
      assert.match((err as Error).message, /not a socket/)
      return true
    })
    assert.equal(readFileSync(path, 'utf8'), 'keep me')
  })
})

describe('WSDS_SOCKET configuration', () => {
  it('has no socket by default, and mode 660 when one is set', () => {
    assert.equal(loadConfig({}).socketPath, null)
    const config = loadConfig({ WSDS_SOCKET: '/run/wsds/gateway.sock' })
    assert.equal(config.socketPath, '/run/wsds/gateway.sock')
    assert.equal(config.socketMode, 0o660)
    assert.equal(loadConfig({ WSDS_SOCKET: '/run/wsds/gateway.sock', WSDS_SOCKET_MODE: '0666' }).socketMode, 0o666)
    assert.equal(loadConfig({}, ['--socket', '/tmp/a.sock', '--socket-mode', '600']).socketMode, 0o600)
  })

  for (const [env, value, pattern] of [
    ['WSDS_SOCKET', 'relative/gateway.sock', /absolute path/],
    ['WSDS_SOCKET', '/' + 'x'.repeat(120), /at most 100 bytes/],
    ['WSDS_SOCKET_MODE', '999', /octal/],
    ['WSDS_SOCKET_MODE', 'rw-rw----', /octal/],
  ] as const) {
    it(`refuses ${env}=${value.length > 30 ? value.slice(0, 30) + '...' : value} with ERR_CONFIG naming it`, () => {
      assert.throws(
        () => loadConfig({ WSDS_SOCKET: '/run/wsds/gateway.sock', [env]: value }),
        (err: unknown) => isWsdsError(err, 'ERR_CONFIG') && (err as Error).message.includes(env) && pattern.test((err as Error).message),
      )
    })
  }
})
