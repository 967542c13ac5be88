/**
 * CORS for cross-origin pages on both fronts (WSDS_CORS_ORIGINS, default the allowlist): the
 * self-hosted /api proxy and the AWS REST API (local emulation, with the greeting function
 * answering preflights as the stack routes them). Preflights need no id; a page on another
 * origin verifies, then calls the API cross-origin in real Chromium.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import type { Browser } from 'playwright-core'
import { startAwsLocal } from '../local/aws/stack.ts'
import { createCorsPolicy } from '../src/core/cors.ts'
import { readProtocolSettings } from '../src/core/settings.ts'
import { startServer } from '../src/server/server.ts'
import { loadConfig } from '../src/server/config.ts'
import { chromiumBinary, launchBrowser } from './helpers/browser.ts'
import { testKeySet } from './helpers/server.ts'
import { freePort } from './helpers/services.ts'

interface Front {
  /** Base URL as the API host (http://api.wsds.test:port). */
  apiUrl: string
  pageUrl: string
  close(): Promise<void>
}

const fronts: Record<string, (port: number) => Promise<Front>> = {
  'self-hosted /api proxy': async (port) => {
    const config = loadConfig({
      PORT: String(port),
      WSDS_ALLOWED_ORIGINS: `http://app.wsds.test:${port}`,
      WSDS_CORS_ORIGINS: `http://app.wsds.test:${port}`,
      WSDS_LOG_LEVEL: 'silent',
    })
    const server = await startServer({ ...config, keySets: [testKeySet] }, { logger: pino({ level: 'silent' }) })
    return { apiUrl: `http://api.wsds.test:${port}`, pageUrl: `http://app.wsds.test:${port}/`, close: () => server.close() }
  },
  'AWS REST API (local)': async (port) => {
    const config = loadConfig({ PORT: String(port), WSDS_ALLOWED_ORIGINS: `http://app.wsds.test:${port}`, WSDS_AUTH_CACHE_TTL_MS: '0' })
    const local = await startAwsLocal({ ...config, keySets: [testKeySet] })
    return { apiUrl: `http://api.wsds.test:${port}`, pageUrl: `http://app.wsds.test:${port}/`, close: () => local.close() }
  },
}

for (const [name, start] of Object.entries(fronts)) {
  describe(`CORS on the ${name}`, () => {
    let front: Front
    let port: number
    before(async () => {
      port = await freePort()
      front = await start(port)
    })
    after(() => front?.close())
    const local = (path: string) => `http://127.0.0.1:${port}${path}`

    it('answers a preflight from an allowed origin with 204, no id needed, allowing connectionId and WSDS-Signature', async () => {
      const res = await fetch(local('/api/greeting?who=x'), {
        method: 'OPTIONS',
        headers: { origin: `http://app.wsds.test:${port}`, 'access-control-request-method': 'GET', 'access-control-request-headers': 'connectionid, wsds-signature' },
      })
      assert.equal(res.status, 204)
      assert.equal(res.headers.get('access-control-allow-origin'), `http://app.wsds.test:${port}`)
      assert.match(res.headers.get('access-control-allow-headers') ?? '', /connectionId/)
      assert.match(res.headers.get('access-control-allow-headers') ?? '', /WSDS-Signature/)
      assert.match(res.headers.get('access-control-allow-methods') ?? '', /GET/)
      assert.equal(res.headers.get('access-control-allow-credentials'), null)
    })

    it('refuses a preflight from an origin not on the list, or asking for another header, with no allow headers', async () => {
      for (const headers of [
        { origin: 'http://evil.wsds.test', 'access-control-request-method': 'GET', 'access-control-request-headers': 'connectionid' },
        { origin: `http://app.wsds.test:${port}`, 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-other' },
      ]) {
        const res = await fetch(local('/api/greeting'), { method: 'OPTIONS', headers })
        assert.equal(res.status, 403)
        assert.equal(res.headers.get('access-control-allow-origin'), null)
      }
    })

    it('lets an allowed page read a refusal (401 with the origin echoed)', async () => {
      const res = await fetch(local('/api/greeting'), { headers: { origin: `http://app.wsds.test:${port}`, connectionId: 'AAAAAAAAAAAAAAAAAAAAAA' } })
      assert.equal(res.status, 401)
      assert.equal(res.headers.get('access-control-allow-origin'), `http://app.wsds.test:${port}`)
    })

    it('a page on another origin verifies, then calls the API cross-origin in Chromium', { skip: chromiumBinary.skip }, async () => {
      const browser: Browser = await launchBrowser()
      try {
        const page = await browser.newPage()
        await page.goto(front.pageUrl)
        await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 15_000 })
        const connectionId = (await page.locator('#connection-id').textContent())?.trim() ?? ''
        assert.match(connectionId, /^[A-Za-z0-9_-]{22}$/)
        // The call runs in a page of the allowed origin without the demo's CSP (connect-src 'self').
        const app = await browser.newPage()
        await app.goto(`http://app.wsds.test:${port}/healthz`)
        const out = await app.evaluate(
          async ({ url, id }) => {
            const res = await fetch(url, { headers: { connectionId: id } })
            return { status: res.status, body: await res.text() }
          },
          { url: `${front.apiUrl}/api/greeting?who=Cors`, id: connectionId },
        )
        assert.deepEqual(out, { status: 200, body: '{"greeting":"Hello, Cors!"}' })
        // The same call from an origin that is not on the list fails in the browser (no CORS headers).
        const other = await browser.newPage()
        await other.goto(`http://other.wsds.test:${port}/healthz`)
        const blocked = await other.evaluate(
          async ({ url, id }) => fetch(url, { headers: { connectionId: id } }).then(() => 'read', (e: Error) => e.name),
          { url: `${front.apiUrl}/api/greeting`, id: connectionId },
        )
        assert.equal(blocked, 'TypeError')
      } finally {
        await browser.close()
      }
    })
  })
}

describe('CORS policy (src/core/cors.ts) and WSDS_CORS_ORIGINS', () => {
  const policy = createCorsPolicy(['https://app.example.com'])
  const pre = (origin: string | undefined, requestMethod: string, requestHeaders?: string) => policy.decide({ method: 'OPTIONS', origin, requestMethod, requestHeaders })

  it('allows the listed origin exactly, with header names in any case, and no credentials', () => {
    const ok = pre('https://app.example.com', 'POST', 'Content-Type, CONNECTIONID, wsds-signature, x-wsds-service-token')
    assert.equal(ok.kind, 'preflight')
    assert.equal(ok.kind === 'preflight' && ok.status, 204)
    assert.equal(ok.kind === 'preflight' && ok.headers['access-control-allow-credentials'], undefined)
    for (const origin of ['https://APP.example.com', 'https://app.example.com:443', 'http://app.example.com', 'null', undefined]) {
      const out = pre(origin, 'GET', 'connectionid')
      assert.equal(out.kind === 'preflight' && out.status, 403, String(origin))
    }
  })

  it('refuses methods and headers outside the lists, and adds nothing to requests from other origins', () => {
    assert.equal((pre('https://app.example.com', 'TRACE') as { status: number }).status, 403)
    assert.equal((pre('https://app.example.com', 'GET', 'cookie') as { status: number }).status, 403)
    assert.deepEqual(policy.decide({ method: 'GET', origin: 'https://evil.example.com', requestMethod: undefined, requestHeaders: undefined }), { kind: 'none' })
    // OPTIONS without Access-Control-Request-Method is not a preflight: it goes to authorization.
    assert.equal(policy.decide({ method: 'OPTIONS', origin: 'https://app.example.com', requestMethod: undefined, requestHeaders: undefined }).kind, 'headers')
  })

  it('reads WSDS_CORS_ORIGINS with the allowlist as default, none for no cross-origin pages, and a clear error for a bad entry', () => {
    const base = { WSDS_ALLOWED_ORIGINS: 'https://app.example.com' }
    assert.deepEqual(readProtocolSettings(base).corsOrigins, ['https://app.example.com'])
    assert.deepEqual(readProtocolSettings({ ...base, WSDS_CORS_ORIGINS: 'none' }).corsOrigins, [])
    assert.deepEqual(readProtocolSettings({ ...base, WSDS_CORS_ORIGINS: 'https://a.example.com, https://b.example.com:8443' }).corsOrigins, ['https://a.example.com', 'https://b.example.com:8443'])
    assert.throws(() => readProtocolSettings({ ...base, WSDS_CORS_ORIGINS: 'app.example.com' }), { code: 'ERR_CONFIG', message: /WSDS_CORS_ORIGINS/ })
    assert.deepEqual(loadConfig({ PORT: '8080', WSDS_CORS_ORIGINS: 'none' }).corsOrigins, [])
    assert.deepEqual(loadConfig({ PORT: '8080' }, ['--cors-origins', 'https://x.example.com']).corsOrigins, ['https://x.example.com'])
  })
})
