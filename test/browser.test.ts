/**
 * The demo in real headless Chromium against the real gateway: the page verifies over the
 * SDK and shows the greeting; the same page under a forbidden hostname is refused at the
 * upgrade; closing the tab revokes its id. Hostnames are not localhost, so the page is not
 * a secure context (no crypto.subtle), as on a plain-http deployment.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Browser } from 'playwright-core'
import { loadConfig } from '../src/server/config.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { chromiumBinary, launchBrowser } from './helpers/browser.ts'
import { startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { freePort } from './helpers/services.ts'

describe('demo page in headless Chromium', { skip: chromiumBinary.skip }, () => {
  let browser: Browser
  let s: TestServer
  let port: number
  before(async () => {
    port = await freePort()
    const base = loadConfig({ PORT: String(port), WSDS_ALLOWED_ORIGINS: `http://app.wsds.test:${port}`, WSDS_RATE_LIMIT: 'off' })
    s = await startTestServer({ ...base, keySets: [testKeySet], demo: true })
    browser = await launchBrowser()
  })
  after(async () => {
    await browser?.close()
    await s?.close()
  })

  const api = (connectionId: string) => fetch(`${s.url}/api/greeting`, { headers: { connectionId } }).then((r) => r.status)

  it('verifies on an allowed hostname, shows the greeting, and its id stops working when the tab closes', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`http://app.wsds.test:${port}/`)
    await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 10_000 })
    await page.locator('#greeting', { hasText: 'Hello, World!' }).waitFor({ timeout: 10_000 })
    assert.equal(await page.evaluate(() => typeof crypto.subtle), 'undefined', 'page is not a secure context')
    const connectionId = (await page.locator('#connection-id').textContent())?.trim() ?? ''
    assert.match(connectionId, /^[A-Za-z0-9_-]{22}$/)
    assert.equal(await api(connectionId), 200)

    await page.fill('#who', 'Chromium')
    await page.dispatchEvent('#who', 'change')
    await page.locator('#greeting', { hasText: 'Hello, Chromium!' }).waitFor({ timeout: 5000 })

    await page.close()
    const ms = await eventually(async () => (await api(connectionId)) === 401, 2000, '401 after the tab closed')
    assert.ok(ms < 2000)
    assert.deepEqual(errors, [])
    await context.close()
  })

  it('is refused at the upgrade on a forbidden hostname and shows "unauthorized"', async () => {
    const refusedBefore = s.gateway.stats.upgradesRefused.origin
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`http://evil.wsds.test:${port}/`)
    await page.locator('#greeting', { hasText: 'unauthorized' }).waitFor({ timeout: 10_000 })
    await eventually(() => s.gateway.stats.upgradesRefused.origin > refusedBefore, 5000, 'origin refusal counted')
    assert.notEqual((await page.locator('#status').textContent())?.trim(), 'verified')
    assert.equal(s.gateway.verifiedConnections, 0)
    await context.close()
  })

  it('disconnects and reconnects with a fresh id from the buttons', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`http://app.wsds.test:${port}/`)
    await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 10_000 })
    const first = (await page.locator('#connection-id').textContent())?.trim() ?? ''
    await page.click('#disconnect')
    await eventually(async () => (await api(first)) === 401, 2000, 'first id revoked')
    await page.click('#connect')
    await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 10_000 })
    const second = (await page.locator('#connection-id').textContent())?.trim() ?? ''
    assert.notEqual(second, first)
    assert.equal(await api(second), 200)
    await context.close()
  })
})
