/**
 * A same-origin front for the strict-CSP page tests: serves the test page and its bundled
 * script with a given Content-Security-Policy, and passes /wsds (upgrade, raw bytes) and
 * /api through to the gateway, as a reverse proxy in front of both would.
 */
import { build } from 'esbuild'
import { createServer, request, type Server } from 'node:http'
import { connect } from 'node:net'
import type { AddressInfo } from 'node:net'

export interface CspFront {
  url: string
  /** Sets the policy sent with the page and script (null: none). */
  setPolicy(csp: string | null): void
  close(): Promise<void>
}

/** The policy the demo is served with and docs/integrations.md asks of pages. */
export const STRICT_CSP = "default-src 'self'; script-src 'self'; connect-src 'self'"

/** test/fixtures/csp-page.ts bundled with esbuild, as an app bundles the SDK. */
export async function bundlePageScript(): Promise<string> {
  const out = await build({ entryPoints: ['test/fixtures/csp-page.ts'], bundle: true, minify: true, format: 'iife', write: false, logLevel: 'error' })
  return out.outputFiles[0]!.text
}

export const PAGE = '<!doctype html><html><head><meta charset="utf-8"><script src="/csp/page.js"></script></head><body></body></html>'

export async function startCspFront(gatewayUrl: string, script: string, port = 0): Promise<CspFront> {
  const upstream = new URL(gatewayUrl)
  let policy: string | null = null
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/'
    if (path.startsWith('/csp/')) {
      const headers: Record<string, string> = { 'content-type': path === '/csp/page.js' ? 'text/javascript' : 'text/html; charset=utf-8', 'cache-control': 'no-store' }
      if (policy !== null) headers['content-security-policy'] = policy
      res.writeHead(200, headers).end(path === '/csp/page.js' ? script : PAGE)
      return
    }
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    forward.on('error', () => res.writeHead(502).end())
    req.pipe(forward)
  })
  server.on('upgrade', (req, socket, head) => {
    const up = connect(Number(upstream.port), upstream.hostname, () => {
      let text = `${req.method} ${req.url} HTTP/1.1\r\n`
      for (let i = 0; i < req.rawHeaders.length; i += 2) text += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`
      up.write(text + '\r\n')
      if (head.length) up.write(head)
      up.pipe(socket)
      socket.pipe(up)
    })
    up.on('error', () => socket.destroy())
    socket.on('error', () => up.destroy())
  })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  const bound = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${bound}`,
    setPolicy: (csp) => void (policy = csp),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
