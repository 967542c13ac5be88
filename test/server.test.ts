/**
 * Self-hosted behaviour beyond the shared PROTOCOL.md suite: deadline from the upgrade,
 * re-challenges, the streaming proxy, metrics, the CLI.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, request, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseKeySet } from '../src/core/keyset.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { openSocket, solve, verifiedHandshake } from './helpers/ws-client.ts'

const hostname = new URL(TEST_ORIGIN).hostname

describe('self-hosted gateway', () => {
  describe('deadline', () => {
    let s: TestServer
    before(async () => (s = await startTestServer({ challengeTimeoutMs: 300 })))
    after(() => s.close())

    it('rejects a socket that never says hello with timeout and close 4408, counted from the upgrade', async () => {
      const started = performance.now()
      const client = await openSocket(s.wsUrl, { origin: TEST_ORIGIN })
      assert.deepEqual(await client.expect('rejected'), { type: 'rejected', reason: 'timeout' })
      assert.equal((await client.closed).code, 4408)
      const elapsed = performance.now() - started
      assert.ok(elapsed >= 290 && elapsed < 2000, `closed after ${elapsed} ms`)
    })

    it('reports in expiresInMs only the time left since the upgrade', async () => {
      const client = await openSocket(s.wsUrl, { origin: TEST_ORIGIN })
      await new Promise((r) => setTimeout(r, 120))
      client.send({ action: 'hello', v: 1 })
      await client.expect('connection')
      const challenge = await client.expect('challenge')
      assert.ok(challenge.expiresInMs <= 180, `expiresInMs ${challenge.expiresInMs}`)
      await client.close()
    })
  })

  describe('re-challenge', () => {
    let s: TestServer
    before(async () => (s = await startTestServer({ challengeTimeoutMs: 300 })))
    after(() => s.close())

    it('keeps a verified connection admitted while it answers a re-challenge correctly', async () => {
      const { client, connectionId } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      // Past the first deadline: the re-challenge must carry its own.
      await new Promise((r) => setTimeout(r, 350))
      assert.equal(s.gateway.rechallenge(connectionId), true)
      const challenge = await client.expect('challenge')
      assert.ok(challenge.expiresInMs > 250)
      const admitted = await fetch(`${s.url}/api/greeting`, { headers: { connectionId } })
      assert.equal(admitted.status, 200)
      client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, testKeySet.keys, hostname) })
      assert.equal((await client.expect('verified')).connectionId, connectionId)
      assert.equal(s.gateway.verifiedConnections, 1)
      await client.close()
    })

    it('revokes a verified connection that fails a re-challenge (close 4401)', async () => {
      const { client, connectionId } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      s.gateway.rechallenge(connectionId)
      const challenge = await client.expect('challenge')
      client.send({ action: 'answer', token: challenge.token, result: 'nope' })
      assert.equal((await client.expect('rejected')).reason, 'wrong-answer')
      assert.equal((await client.closed).code, 4401)
      await eventually(async () => (await fetch(`${s.url}/api/greeting`, { headers: { connectionId } })).status === 401, 1000, '401')
    })

    it('revokes a verified connection that lets a re-challenge time out (close 4408)', async () => {
      const { client, connectionId } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      s.gateway.rechallenge(connectionId)
      await client.expect('challenge')
      assert.equal((await client.expect('rejected')).reason, 'timeout')
      assert.equal((await client.closed).code, 4408)
    })
  })

  describe('reverse proxy', () => {
    let upstream: Server
    let s: TestServer
    let upstreamUrl: string
    let upstreamHits = 0
    before(async () => {
      // An upstream that echoes method, path and a digest of the body, and can stream a
      // large response, to show the proxy neither buffers nor alters either direction.
      upstream = createServer((req, res) => {
        upstreamHits++
        if (req.url?.startsWith('/download')) {
          const size = Number(new URL(req.url, 'http://x').searchParams.get('bytes'))
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-upstream': 'yes' })
          const chunk = Buffer.alloc(64 * 1024, 7)
          let sent = 0
          const pump = () => {
            while (sent < size) {
              const n = Math.min(chunk.length, size - sent)
              sent += n
              if (!res.write(chunk.subarray(0, n))) return void res.once('drain', pump)
            }
            res.end()
          }
          return pump()
        }
        const hash = createHash('sha256')
        let bytes = 0
        req.on('data', (c: Buffer) => {
          bytes += c.length
          hash.update(c)
        })
        req.on('end', () => {
          res.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes' })
          res.end(JSON.stringify({
            method: req.method,
            url: req.url,
            bytes,
            sha256: hash.digest('hex'),
            wsdsId: req.headers['x-wsds-connection-id'],
            connectionHeader: req.headers['connectionid'],
          }))
        })
      })
      await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
      upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
      s = await startTestServer({ upstream: upstreamUrl })
    })
    after(async () => {
      await s.close()
      upstream.closeAllConnections()
      await new Promise((r) => upstream.close(r))
    })

    it('streams a 64 MiB upload and a 64 MiB download through for a verified id, with method, path, status and headers intact', async () => {
      const { client, connectionId } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      const size = 64 * 1024 * 1024
      const expected = createHash('sha256')
      const body = await new Promise<{ status: number; json: Record<string, unknown>; upstream: string | undefined }>((resolve, reject) => {
        const req = request(`${s.url}/api/upload/x?y=1`, { method: 'PUT', headers: { connectionId } }, (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => (text += c))
          res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(text), upstream: res.headers['x-upstream'] as string }))
        })
        req.on('error', reject)
        const chunk = Buffer.alloc(1024 * 1024)
        for (let i = 0; i < 64; i++) {
          chunk.fill(i)
          expected.update(chunk)
          req.write(Buffer.from(chunk))
        }
        req.end()
      })
      assert.equal(body.status, 201)
      assert.equal(body.upstream, 'yes')
      assert.deepEqual(body.json, {
        method: 'PUT',
        url: '/upload/x?y=1',
        bytes: size,
        sha256: expected.digest('hex'),
        wsdsId: connectionId,
        connectionHeader: connectionId,
      })
      const rssBefore = process.memoryUsage().rss
      const res = await fetch(`${s.url}/api/download?bytes=${size}`, { headers: { connectionId } })
      assert.equal(res.status, 200)
      let received = 0
      for await (const chunk of res.body!) received += (chunk as Uint8Array).length
      assert.equal(received, size)
      // The test process holds client and server: if the proxy buffered, RSS would grow by the body.
      assert.ok(process.memoryUsage().rss - rssBefore < 48 * 1024 * 1024)
      await client.close()
    })

    it('does not contact the upstream for a refused request', async () => {
      const hits = upstreamHits
      const res = await fetch(`${s.url}/api/anything`, { method: 'POST', body: 'x'.repeat(100_000) })
      assert.equal(res.status, 401)
      assert.deepEqual(await res.json(), { error: 'unauthorized' })
      assert.equal(upstreamHits, hits)
    })

    it('answers 502 when the upstream is down', async () => {
      const dead = await startTestServer({ upstream: 'http://127.0.0.1:9' })
      const { client, connectionId } = await verifiedHandshake(dead.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      const res = await fetch(`${dead.url}/api/greeting`, { headers: { connectionId } })
      assert.equal(res.status, 502)
      await client.close()
      await dead.close()
    })
  })

  describe('demo greeting service and operations endpoints', () => {
    let s: TestServer
    before(async () => (s = await startTestServer()))
    after(() => s.close())

    it('greets through the authenticator', async () => {
      const { client, connectionId } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      const res = await fetch(`${s.url}/api/greeting?who=Ada`, { headers: { connectionId } })
      assert.deepEqual(await res.json(), { greeting: 'Hello, Ada!' })
      const world = await fetch(`${s.url}/api/greeting`, { headers: { connectionId } })
      assert.deepEqual(await world.json(), { greeting: 'Hello, World!' })
      await client.close()
    })

    it('serves forward auth on a configured path', async () => {
      const custom = await startTestServer({ authPath: '/_auth/wsds' })
      const { client, connectionId } = await verifiedHandshake(custom.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      assert.equal((await fetch(`${custom.url}/_auth/wsds`, { headers: { connectionId } })).status, 204)
      assert.equal((await fetch(`${custom.url}/_auth/wsds`)).status, 401)
      assert.equal((await fetch(`${custom.url}/wsds/auth`, { headers: { connectionId } })).status, 404)
      await client.close()
      await custom.close()
    })

    it('answers a plain GET on the WebSocket path with 426 and unknown paths with 404', async () => {
      assert.equal((await fetch(`${s.url}/wsds`)).status, 426)
      assert.equal((await fetch(`${s.url}/nope`)).status, 404)
    })

    it('closes a socket that floods messages with 4429, and answers a normal rate', async () => {
      const calm = await openSocket(s.wsUrl, { origin: TEST_ORIGIN })
      for (let i = 0; i < 10; i++) {
        calm.send({ action: 'ping' })
        await calm.expect('pong')
      }
      await calm.close()
      const flood = await openSocket(s.wsUrl, { origin: TEST_ORIGIN })
      for (let i = 0; i < 40; i++) flood.send({ action: 'ping' })
      assert.equal((await flood.closed).code, 4429)
      assert.equal(s.gateway.stats.rateLimitedSockets, 1)
    })

    it('survives a flood of garbage upgrades and half-open sockets', async () => {
      const { connect } = await import('node:net')
      const port = s.port
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          new Promise<void>((resolve) => {
            const sock = connect(port, '127.0.0.1', () => {
              sock.write(i % 2 ? 'GET /wsds HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n' : '\x00\x01garbage\r\n\r\n')
              setTimeout(() => sock.destroy(), 20)
            })
            sock.on('error', () => {})
            sock.on('close', () => resolve())
          }),
        ),
      )
      assert.equal((await fetch(`${s.url}/healthz`)).status, 200)
    })
  })
})

describe('a start that fails', () => {
  it('rejects with the listen error when the port is taken, and leaves its socket file uncreated', async () => {
    const taken = await startTestServer()
    const dir = mkdtempSync(join(tmpdir(), 'wsds-start-'))
    try {
      const socketPath = join(dir, 'gateway.sock')
      await assert.rejects(startTestServer({ port: taken.port, socketPath }), (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE')
      assert.equal(existsSync(socketPath), false)
      // The taken port's server is untouched.
      assert.equal((await fetch(`${taken.url}/healthz`)).status, 200)
    } finally {
      await taken.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('monitor mode and rate limits on the standalone gateway', () => {
  it('admits every request in monitor mode and tells the upstream what enforce would have done', async () => {
    const seen: Array<string | undefined> = []
    const upstream = createServer((req, res) => {
      seen.push(req.headers['x-wsds-verdict'] as string | undefined)
      res.end('ok')
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const s = await startTestServer({ mode: 'monitor', upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` })
    try {
      assert.equal((await fetch(`${s.url}/api/x`)).status, 200)
      assert.equal((await fetch(`${s.url}/api/x`, { headers: { connectionId: 'AAAAAAAAAAAAAAAAAAAAAA', 'x-wsds-verdict': 'allow' } })).status, 200)
      const { client, connectionId } = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      assert.equal((await fetch(`${s.url}/api/x`, { headers: { connectionId } })).status, 200)
      assert.deepEqual(seen, ['deny:missing', 'deny:unknown', 'allow'])
      const auth = await fetch(`${s.url}/wsds/auth`)
      assert.equal(auth.status, 204)
      assert.equal(auth.headers.get('x-wsds-verdict'), 'deny:missing')
      assert.equal(s.front.decisions['deny:missing'], 2)
      await client.close()
    } finally {
      await s.close()
      upstream.closeAllConnections()
      await new Promise((r) => upstream.close(r))
    }
  })

  it('refuses upgrades over the per-address limit with 429, believing X-Forwarded-For only when told to', async () => {
    for (const trustProxy of [false, true]) {
      const s = await startTestServer({ rateLimit: 2, trustProxy })
      try {
        const open = (xff: string) => openSocket(s.wsUrl, { origin: TEST_ORIGIN, headers: { 'x-forwarded-for': xff } })
        // Burst is twice the per-second rate: 4 pass, the 5th is refused.
        const clients = [await open('203.0.113.1'), await open('203.0.113.1'), await open('203.0.113.1'), await open('203.0.113.1')]
        await assert.rejects(open('203.0.113.1'), { status: 429 })
        if (trustProxy) clients.push(await open('198.51.100.7'))
        else await assert.rejects(open('198.51.100.7'), { status: 429 }, 'without trust the header is ignored: same loopback bucket')
        assert.equal(s.gateway.stats.upgradesRefused['rate-limit'], trustProxy ? 1 : 2)
        await Promise.all(clients.map((c) => c.close()))
      } finally {
        await s.close()
      }
    }
  })
})

describe('wsds CLI', () => {
  const run = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (c) => (stdout += c))
      child.stderr.on('data', (c) => (stderr += c))
      child.on('close', (code) => resolve({ code, stdout, stderr }))
    })

  it('generates a valid key set with the requested count and id', async () => {
    const { code, stdout } = await run(['keys', 'generate', '--count', '20', '--id', 'build-42'])
    assert.equal(code, 0)
    const keySet = parseKeySet(JSON.parse(stdout))
    assert.equal(keySet.id, 'build-42')
    assert.equal(keySet.keys.length, 20)
  })

  it('refuses too few keys with a clear message and exit code 2', async () => {
    const { code, stderr } = await run(['keys', 'generate', '--count', '3'])
    assert.equal(code, 2)
    assert.match(stderr, /count/)
  })

  it('exits 2 naming the bad setting for invalid configuration', async () => {
    for (const [env, name] of [
      [{ PORT: 'eighty' }, 'PORT'],
      [{ WSDS_CHALLENGE_TIMEOUT_MS: '-5' }, 'WSDS_CHALLENGE_TIMEOUT_MS'],
      [{ WSDS_ALLOWED_ORIGINS: 'not a url' }, 'WSDS_ALLOWED_ORIGINS'],
      [{ WSDS_KEYS_FILE: '/nonexistent/keys.json' }, 'WSDS_KEYS_FILE'],
      [{ WSDS_RATE_LIMIT: 'lots' }, 'WSDS_RATE_LIMIT'],
    ] as const) {
      const { code, stderr } = await run(['serve'], env)
      assert.equal(code, 2, `${name}: ${stderr}`)
      assert.match(stderr, new RegExp(name))
    }
    const flag = await run(['serve', '--challenge-timeout-ms', 'soon'])
    assert.equal(flag.code, 2)
    assert.match(flag.stderr, /WSDS_CHALLENGE_TIMEOUT_MS/)
  })
})
