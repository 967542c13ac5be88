/**
 * wsds/react: server rendering touches no browser API and opens nothing; in real Chromium a
 * provider under StrictMode opens exactly one socket, verifies, fetches through the session,
 * revokes its id on unmount, and reports a refusal as 'rejected' with its code.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import type { Browser, Page } from 'playwright-core'
import { createElement } from 'react'
import { renderToString } from 'react-dom/server'
import { WsdsProvider, useWsds } from '../src/react/index.ts'
import { loadConfig } from '../src/server/config.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { chromiumBinary, launchBrowser } from './helpers/browser.ts'
import { startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { freePort } from './helpers/services.ts'

describe('wsds/react on the server', () => {
  it('renderToString of a provider renders "connecting" and constructs no WebSocket', () => {
    let constructed = 0
    class CountingSocket {
      constructor() {
        constructed++
      }
    }
    const globals = globalThis as Record<string, unknown>
    assert.equal(globals.window, undefined, 'Node has no window: the render must not need one')
    function Status() {
      return createElement('span', null, useWsds().status)
    }
    const html = renderToString(
      createElement(
        WsdsProvider,
        { url: 'ws://127.0.0.1:9/wsds', keys: testKeySet.keys, WebSocket: CountingSocket as never },
        createElement(Status),
      ),
    )
    assert.equal(html, '<span>connecting</span>')
    assert.equal(constructed, 0)
  })

  it('useWsds() outside a provider throws ERR_CONFIG', () => {
    function Orphan() {
      useWsds()
      return null
    }
    assert.throws(() => renderToString(createElement(Orphan)), { code: 'ERR_CONFIG' })
  })
})

/**
 * Bundles the test page as a user's bundler would, from the packed package: `npm pack` (the
 * dist/ that `npm test` has just built), installed with React into a fresh app outside the
 * repository, the page's source copied there so every import resolves from that app. React
 * in development mode, so StrictMode runs effects twice.
 */
async function bundlePage(): Promise<string> {
  const { mkdtempSync, copyFileSync, writeFileSync, readFileSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { execFileSync } = await import('node:child_process')
  const root = fileURLToPath(new URL('..', import.meta.url))
  const work = mkdtempSync(join(tmpdir(), 'wsds-react-app-'))
  try {
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.toLowerCase().startsWith('npm_')) env[k] = v
    const packed = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work, root], { cwd: work, env, encoding: 'utf8' })) as Array<{ filename: string }>
    writeFileSync(join(work, 'package.json'), JSON.stringify({ name: 'react-app', private: true, type: 'module' }))
    const version = (name: string) => (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', join(work, packed[0]!.filename), `react@${version('react')}`, `react-dom@${version('react-dom')}`], { cwd: work, env, stdio: 'ignore' })
    copyFileSync(fileURLToPath(new URL('./fixtures/react-app.ts', import.meta.url)), join(work, 'app.ts'))
    const result = await build({
      entryPoints: [join(work, 'app.ts')],
      absWorkingDir: work,
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2020',
      define: { 'process.env.NODE_ENV': '"development"' },
      logLevel: 'silent',
    })
    return result.outputFiles[0]!.text
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

describe('wsds/react in headless Chromium', { skip: chromiumBinary.skip }, () => {
  let browser: Browser
  let s: TestServer
  let port: number
  before(async () => {
    port = await freePort()
    const base = loadConfig({ PORT: String(port), WSDS_ALLOWED_ORIGINS: `http://app.wsds.test:${port}`, WSDS_RATE_LIMIT: 'off' })
    s = await startTestServer({ ...base, keySets: [testKeySet] })
    const js = await bundlePage()
    // The page is served from the gateway's own origin, as an app behind the same proxy would be.
    const gatewayHandler = s.server.listeners('request')[0] as (req: IncomingMessage, res: ServerResponse) => void
    s.server.removeAllListeners('request')
    s.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://x')
      if (url.pathname === '/react/' || url.pathname === '/react/refused') {
        const config = { keys: testKeySet.keys, keySet: testKeySet.id, reconnect: url.pathname === '/react/' }
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        res.end(
          `<!doctype html><html><body><div id="root"></div>` +
            `<script>window.wsdsConfig=${JSON.stringify(config)}</script><script type="module" src="/react/app.js"></script></body></html>`,
        )
        return
      }
      if (url.pathname === '/react/app.js') {
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' })
        res.end(js)
        return
      }
      gatewayHandler.call(s.server, req, res)
    })
    browser = await launchBrowser()
  })
  after(async () => {
    await browser?.close()
    await s?.close()
  })

  const api = (connectionId: string) => fetch(`${s.url}/api/greeting`, { headers: { connectionId } }).then((r) => r.status)
  const state = (page: Page) => page.evaluate(() => window.wsdsReact)

  it('verifies under StrictMode with one socket, fetches the greeting, and its id gets 401 within 2 s of unmounting', async () => {
    const accepted = s.gateway.stats.upgradesAccepted
    const context = await browser.newContext()
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`http://app.wsds.test:${port}/react/`)
    await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 10_000 })
    await page.locator('#greeting', { hasText: 'Hello, React!' }).waitFor({ timeout: 10_000 })
    const { connectionId, signed } = await state(page)
    assert.match(connectionId ?? '', /^[A-Za-z0-9_-]{22}$/)
    assert.equal(await api(connectionId!), 200)
    await eventually(async () => (await state(page)).signed !== undefined, 5000, 'sign() resolved')
    assert.equal((await state(page)).signed?.connectionId ?? signed?.connectionId, connectionId)
    // StrictMode mounted, unmounted and mounted the provider: the gateway saw one socket.
    assert.equal(s.gateway.stats.upgradesAccepted - accepted, 1)
    assert.equal(s.gateway.openConnections, 1)

    await page.click('#unmount')
    await page.locator('#unmounted').waitFor({ timeout: 5000 })
    const ms = await eventually(async () => (await api(connectionId!)) === 401, 2000, '401 after unmount')
    assert.ok(ms < 2000)
    assert.equal(s.gateway.openConnections, 0)
    assert.deepEqual(errors, [])
    await context.close()
  })

  it('shows "rejected" with the error code on a forbidden hostname', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`http://evil.wsds.test:${port}/react/refused`)
    await page.locator('#status', { hasText: 'rejected' }).waitFor({ timeout: 10_000 })
    const { error, connectionId } = await state(page)
    // The upgrade is refused with 403 before any socket exists: the browser only sees that it
    // could not connect, and with reconnects off the session gives up with ERR_CONNECT.
    assert.equal(error, 'ERR_CONNECT')
    assert.equal(connectionId, null)
    assert.equal(s.gateway.verifiedConnections, 0)
    await context.close()
  })
})

describe('examples/react', { skip: chromiumBinary.skip }, () => {
  it('builds with Vite, and its page verifies and shows the greeting in Chromium', async () => {
    const { build: viteBuild } = await import('vite')
    const { mkdtemp, readFile, rm, writeFile } = await import('node:fs/promises')
    const { tmpdir } = await import('node:os')
    const { join, extname } = await import('node:path')
    const dir = await mkdtemp(join(tmpdir(), 'wsds-react-example-'))
    const keysFile = join(dir, 'keys.json')
    await writeFile(keysFile, JSON.stringify(testKeySet))
    const outDir = join(dir, 'dist')
    const previous = process.env.WSDS_EXAMPLE_KEYS
    process.env.WSDS_EXAMPLE_KEYS = keysFile
    try {
      await viteBuild({
        configFile: fileURLToPath(new URL('../examples/react/vite.config.ts', import.meta.url)),
        build: { outDir, emptyOutDir: true },
        logLevel: 'silent',
      })
    } finally {
      if (previous === undefined) delete process.env.WSDS_EXAMPLE_KEYS
      else process.env.WSDS_EXAMPLE_KEYS = previous
    }
    const port = await freePort()
    const base = loadConfig({ PORT: String(port), WSDS_ALLOWED_ORIGINS: `http://app.wsds.test:${port}`, WSDS_RATE_LIMIT: 'off' })
    const s = await startTestServer({ ...base, keySets: [testKeySet] })
    const gatewayHandler = s.server.listeners('request')[0] as (req: IncomingMessage, res: ServerResponse) => void
    s.server.removeAllListeners('request')
    // The built app is served from the gateway's origin, as a proxy in front of both would.
    s.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname
      if (path.startsWith('/api') || path === '/wsds') return gatewayHandler.call(s.server, req, res)
      const file = path === '/' ? 'index.html' : path.slice(1)
      if (file.includes('..')) return void res.writeHead(404).end()
      readFile(join(outDir, file)).then(
        (body) => {
          const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' }
          res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' })
          res.end(body)
        },
        () => res.writeHead(404).end(),
      )
    })
    const browser = await launchBrowser()
    try {
      const page = await browser.newPage()
      await page.goto(`http://app.wsds.test:${port}/`)
      await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 10_000 })
      await page.locator('#greeting', { hasText: 'Hello, World!' }).waitFor({ timeout: 10_000 })
      const connectionId = (await page.locator('#connection-id').textContent())?.trim() ?? ''
      assert.equal((await fetch(`${s.url}/api/greeting`, { headers: { connectionId } })).status, 200)
      await page.click('#disconnect')
      await eventually(async () => (await fetch(`${s.url}/api/greeting`, { headers: { connectionId } })).status === 401, 2000, 'id revoked after Disconnect')
      await page.click('#connect')
      await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 10_000 })
    } finally {
      await browser.close()
      await s.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
