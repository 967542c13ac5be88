/**
 * Request binding in real headless Chromium with the demo page: on http://localhost (a secure
 * context) the SDK binds and every call carries WSDS-Signature, so the id alone is refused;
 * on a plain-http hostname (no crypto.subtle) it falls back to unbound and still works under
 * `optional`, and is refused with binding-required under `required`.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Browser } from 'playwright-core'
import type { BindingMode } from '../src/core/binding.ts'
import { loadConfig } from '../src/server/config.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { chromiumBinary, launchBrowser } from './helpers/browser.ts'
import { startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { freePort } from './helpers/services.ts'

describe('request binding in headless Chromium (demo page)', { skip: chromiumBinary.skip }, () => {
  let browser: Browser
  const servers: TestServer[] = []
  const start = async (binding: BindingMode) => {
    const port = await freePort()
    const base = loadConfig({
      PORT: String(port),
      WSDS_ALLOWED_ORIGINS: `http://localhost:${port},http://app.wsds.test:${port}`,
      WSDS_RATE_LIMIT: 'off',
      WSDS_BINDING: binding,
    })
    const s = await startTestServer({ ...base, keySets: [testKeySet], demo: true })
    servers.push(s)
    return { s, port }
  }
  before(async () => (browser = await launchBrowser()))
  after(async () => {
    await browser?.close()
    await Promise.all(servers.map((s) => s.close()))
  })

  it('binds on http://localhost and signs its calls: the id alone gets 401', async () => {
    const { s, port } = await start('optional')
    const context = await browser.newContext()
    const page = await context.newPage()
    const signatures: string[] = []
    page.on('request', (request) => {
      // The demo also calls the API before it is verified, without an id, to show a refusal.
      const headers = request.headers()
      if (new URL(request.url()).pathname.startsWith('/api/') && headers.connectionid !== undefined) signatures.push(headers['wsds-signature'] ?? '')
    })
    await page.goto(`http://localhost:${port}/`)
    assert.equal(await page.evaluate(() => typeof crypto.subtle), 'object', 'localhost is a secure context')
    await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 15_000 })
    await page.locator('#greeting', { hasText: 'Hello, World!' }).waitFor({ timeout: 10_000 })
    assert.ok(signatures.length > 0)
    for (const header of signatures) assert.match(header, /^t=\d+, s=[A-Za-z0-9_-]{43}$/)
    const connectionId = (await page.locator('#connection-id').textContent())?.trim() ?? ''
    assert.equal((await fetch(`${s.url}/api/greeting`, { headers: { connectionId } })).status, 401)
    await page.fill('#who', 'Chromium')
    await page.dispatchEvent('#who', 'change')
    await page.locator('#greeting', { hasText: 'Hello, Chromium!' }).waitFor({ timeout: 5000 })
    await context.close()
  })

  it('falls back to unbound on a plain-http hostname and still works under optional', async () => {
    const { s, port } = await start('optional')
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`http://app.wsds.test:${port}/`)
    assert.equal(await page.evaluate(() => typeof crypto.subtle), 'undefined')
    await page.locator('#greeting', { hasText: 'Hello, World!' }).waitFor({ timeout: 15_000 })
    const connectionId = (await page.locator('#connection-id').textContent())?.trim() ?? ''
    assert.equal((await fetch(`${s.url}/api/greeting`, { headers: { connectionId } })).status, 200)
    await context.close()
  })

  it('cannot verify on a plain-http hostname under required, and verifies on localhost', async () => {
    const { s, port } = await start('required')
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`http://app.wsds.test:${port}/`)
    await eventually(() => s.gateway.stats.outcomes['binding-required'] > 0, 15_000, 'binding-required refusal')
    assert.equal(s.gateway.verifiedConnections, 0)
    const secure = await context.newPage()
    await secure.goto(`http://localhost:${port}/`)
    await secure.locator('#greeting', { hasText: 'Hello, World!' }).waitFor({ timeout: 15_000 })
    await context.close()
  })
})
