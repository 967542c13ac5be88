/**
 * The demo page in real headless Chromium against the AWS deployment run locally: it
 * verifies through the WebSocket API, the state machine and the handlers, shows the greeting
 * fetched through the REST authorizer, and its id gets 401 after the tab closes within the
 * authorizer cache TTL configured here (2 s: on AWS the TTL is the revocation bound).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Browser } from 'playwright-core'
import { startAwsLocal, type AwsLocal } from '../local/aws/stack.ts'
import { loadConfig } from '../src/server/config.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { chromiumBinary, launchBrowser } from './helpers/browser.ts'
import { testKeySet } from './helpers/server.ts'
import { freePort } from './helpers/services.ts'

const TTL_MS = 2000

describe('demo page in headless Chromium on the AWS deployment (local)', { skip: chromiumBinary.skip }, () => {
  let browser: Browser
  let local: AwsLocal
  let port: number
  before(async () => {
    port = await freePort()
    const config = loadConfig({ PORT: String(port), WSDS_ALLOWED_ORIGINS: `http://app.wsds.test:${port}`, WSDS_AUTH_CACHE_TTL_MS: String(TTL_MS) })
    local = await startAwsLocal({ ...config, keySets: [testKeySet] })
    browser = await launchBrowser()
  })
  after(async () => {
    await browser?.close()
    await local?.close()
  })

  const api = (connectionId: string) => fetch(`${local.url}/api/greeting`, { headers: { connectionId } }).then((r) => r.status)

  it('verifies, shows the greeting through the authorizer, and the id gets 401 within the authorizer TTL after the tab closes', async () => {
    assert.equal(local.authorizerTtlSeconds, 2)
    const context = await browser.newContext()
    const page = await context.newPage()
    const errors: string[] = []
    page.on('pageerror', (e) => errors.push(e.message))
    await page.goto(`http://app.wsds.test:${port}/`)
    await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 10_000 })
    await page.locator('#greeting', { hasText: 'Hello, World!' }).waitFor({ timeout: 10_000 })
    const connectionId = (await page.locator('#connection-id').textContent())?.trim() ?? ''
    assert.match(connectionId, /^[A-Za-z0-9_-]{22}$/)
    assert.equal(await api(connectionId), 200)

    await page.fill('#who', 'Lambda')
    await page.dispatchEvent('#who', 'change')
    await page.locator('#greeting', { hasText: 'Hello, Lambda!' }).waitFor({ timeout: 5000 })
    const hitsBefore = local.rest.stats.cacheHits
    assert.equal(await api(connectionId), 200)
    assert.ok(local.rest.stats.cacheHits > hitsBefore, 'the authorizer result came from its cache')

    await page.close()
    // The record goes at once ($disconnect); the cached Allow lives out its TTL.
    await eventually(async () => (await local.store.get(connectionId)) === null, 2000, 'record deleted')
    const ms = await eventually(async () => (await api(connectionId)) === 401, TTL_MS + 1000, '401 after the tab closed')
    assert.ok(ms <= TTL_MS + 1000)
    assert.deepEqual(errors, [])
    await context.close()
  })

  it('is refused at the upgrade on a forbidden hostname and shows "unauthorized"', async () => {
    const refusedBefore = local.counters.lambda.connect?.invocations ?? 0
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`http://evil.wsds.test:${port}/`)
    await page.locator('#greeting', { hasText: 'unauthorized' }).waitFor({ timeout: 10_000 })
    assert.ok((local.counters.lambda.connect?.invocations ?? 0) > refusedBefore, '$connect ran and refused')
    assert.notEqual((await page.locator('#status').textContent())?.trim(), 'verified')
    await context.close()
  })
})
