/**
 * The shipped nginx and Caddy configs (deploy/) as an attacker meets them, with a recording
 * stand-in for the gateway's forward auth: what the auth check is sent (the original method
 * and target, the signature), what the upstream receives (the verified id alone, none of the
 * client's X-WSDS-*), and what never reaches the gateway (metrics, the demo page).
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { caddyBinary, nginxBinary, startCaddy, startNginx, type ProxyTargets, type RunningProxy } from './helpers/proxies.ts'

interface Recorder {
  server: Server
  host: string
  seen: Array<{ url: string; headers: IncomingHttpHeaders }>
}

type Answer = { status: number; headers?: Record<string, string>; body?: string }

async function recorder(answer: (url: string, headers: IncomingHttpHeaders) => Answer): Promise<Recorder> {
  const seen: Recorder['seen'] = []
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers })
    req.resume()
    const a = answer(req.url ?? '', req.headers)
    res.writeHead(a.status, a.headers ?? {})
    res.end(a.body)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, host: `127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

function rawGet(port: number, lines: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (c) => (data += c))
    socket.on('error', reject)
    socket.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data)
      if (!m) return reject(new Error(`no answer: ${JSON.stringify(data.slice(0, 100))}`))
      resolve({ status: Number(m[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) })
    })
    socket.write(lines.join('\r\n') + '\r\n\r\n')
  })
}

const VERIFIED = 'verified-id-0123456789'

function suite(name: string, skip: string | false, start: (t: ProxyTargets) => Promise<RunningProxy>): void {
  describe(`${name}: what the shipped config sends where`, { skip }, () => {
    let gateway: Recorder
    let upstream: Recorder
    let site: Recorder
    let proxy: RunningProxy
    before(async () => {
      gateway = await recorder((url, headers): Answer => {
        if (!url.startsWith('/wsds/auth')) return { status: 200, body: 'gateway' }
        if (/%2f/i.test(String(headers['x-forwarded-uri']).split('?')[0]!)) return { status: 400, headers: { 'content-type': 'application/json' }, body: '{"error":"bad-path"}' }
        return { status: 204, headers: { connectionId: VERIFIED, 'x-wsds-connection-id': VERIFIED, 'x-wsds-origin': 'http://app.wsds.test', 'x-wsds-verdict': 'allow' } }
      })
      upstream = await recorder(() => ({ status: 200, headers: { 'content-type': 'application/json' }, body: '{"ok":true}' }))
      site = await recorder(() => ({ status: 200, body: 'site' }))
      proxy = await start({ gateway: gateway.host, upstream: upstream.host, app: site.host })
    })
    after(async () => {
      await proxy?.stop()
      for (const r of [gateway, upstream, site]) if (r) await new Promise((done) => r.server.close(done))
    })

    it('sends the auth check the original method, target as sent, id and WSDS-Signature', async () => {
      gateway.seen.length = 0
      const r = await rawGet(proxy.port, ['POST /api/greeting?who=A%20B&x=%2F HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close', 'Content-Length: 0', 'connectionId: client-id', 'WSDS-Signature: t=1, s=abc'])
      assert.equal(r.status, 200, r.body + proxy.output())
      const auth = gateway.seen.find((s) => s.url.startsWith('/wsds/auth'))
      assert.ok(auth, 'the gateway was asked')
      assert.equal(auth.headers['x-forwarded-method'], 'POST')
      assert.equal(auth.headers['x-forwarded-uri'], '/api/greeting?who=A%20B&x=%2F')
      assert.equal(auth.headers.connectionid, 'client-id')
      assert.equal(auth.headers['wsds-signature'], 't=1, s=abc')
    })

    it('passes the upstream the verified id, not the client\'s (even repeated), and none of the client\'s X-WSDS-* in any spelling', async () => {
      upstream.seen.length = 0
      const r = await rawGet(proxy.port, [
        'GET /api/greeting HTTP/1.1',
        'Host: 127.0.0.1',
        'Connection: close',
        'connectionId: client-id',
        'connectionId: attacker-id',
        'X-WSDS-Verdict: forged',
        'X_WSDS_Verdict: forged',
        'x_wsds_origin: forged',
      ])
      assert.equal(r.status, 200, r.body)
      const h = upstream.seen[0]!.headers
      assert.equal(h.connectionid, VERIFIED)
      assert.equal(h['x-wsds-verdict'], 'allow')
      assert.equal(h['x-wsds-connection-id'], VERIFIED)
      const forged = Object.entries(h).filter(([k, v]) => k.replace(/_/g, '-').startsWith('x-wsds-') && String(v).includes('forged'))
      assert.deepEqual(forged, [])
    })

    it('answers 400 bad-path when the gateway refuses the target', async () => {
      const r = await rawGet(proxy.port, ['GET /api/greeting%2fx HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close', 'connectionId: client-id'])
      assert.equal(r.status, 400)
      assert.ok(r.body.includes('{"error":"bad-path"}'), r.body)
    })

    it('never sends /metrics, /healthz, the demo page or /wsds/auth to the gateway', async () => {
      gateway.seen.length = 0
      for (const path of ['/metrics', '/healthz', '/', '/demo/config.json', '/wsds/auth']) {
        const r = await rawGet(proxy.port, [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'])
        assert.notEqual(r.body, 'gateway', path)
      }
      assert.deepEqual(gateway.seen.map((s) => s.url), [])
    })
  })
}

suite('nginx', nginxBinary.skip, startNginx)
suite('Caddy', caddyBinary.skip, startCaddy)
