/**
 * Strict Content-Security-Policy pages in real headless Chromium against the real gateway
 * (docs/integrations.md, "Content-Security-Policy"): the SDK, bundled with esbuild as an app
 * would bundle it, verifies with no option set under `script-src 'self'` (no unsafe-eval,
 * no wasm-unsafe-eval) and with Trusted Types enforced, with no CSP violation; engine checks
 * in enforce pass in Chromium for every challenge.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { loadConfig } from '../src/server/config.ts'
import { chromiumBinary, launchBrowser } from './helpers/browser.ts'
import { bundlePageScript, PAGE, STRICT_CSP } from './helpers/csp-front.ts'
import { startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { freePort } from './helpers/services.ts'

const TRUSTED_TYPES_CSP = `${STRICT_CSP}; require-trusted-types-for 'script'`


const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

describe('strict CSP pages in headless Chromium', { skip: chromiumBinary.skip }, () => {
  let browser: Browser
  let s: TestServer
  let port: number
  let script: string
  before(async () => {
    port = await freePort()
    const base = loadConfig({ PORT: String(port), WSDS_ALLOWED_ORIGINS: `http://app.wsds.test:${port}`, WSDS_RATE_LIMIT: 'off', WSDS_ENGINE_CHECKS: 'enforce' })
    s = await startTestServer({ ...base, keySets: [testKeySet] })
    script = await bundlePageScript()
    // The pages come from page.route, which Chromium files under the public address space,
    // so its Local Network Access checks would block their socket to 127.0.0.1; a real page
    // is served from the gateway's own origin and never meets them.
    browser = await launchBrowser(['--disable-features=LocalNetworkAccessChecks'])
  })
  after(async () => {
    await browser?.close()
    await s?.close()
  })

  async function openPage(csp: string | null): Promise<Page> {
    const page = await browser.newPage()
    const headers = (type: string): Record<string, string> => (csp === null ? { 'content-type': type } : { 'content-type': type, 'content-security-policy': csp })
    await page.route(`http://app.wsds.test:${port}/csp/**`, (route) => {
      const url = new URL(route.request().url())
      if (url.pathname === '/csp/page.js') return route.fulfill({ status: 200, headers: headers('text/javascript'), body: script })
      return route.fulfill({ status: 200, headers: headers('text/html; charset=utf-8'), body: PAGE })
    })
    await page.goto(`http://app.wsds.test:${port}/csp/`)
    await page.waitForFunction(() => 'wsdsTest' in window)
    return page
  }

  const keys = [...testKeySet.keys]

  for (const [label, csp] of [
    ['script-src \'self\' (no unsafe-eval)', STRICT_CSP],
    ['Trusted Types enforced', TRUSTED_TYPES_CSP],
    ['no CSP at all', null],
  ] as const) {
    it(`verifies with no option and calls the protected API on a page with ${label}, with no CSP violation`, async () => {
      const page = await openPage(csp)
      const result = await page.evaluate((k) => window.wsdsTest.single(k), keys)
      assert.match(result.connectionId, /^[A-Za-z0-9_-]{22}$/)
      assert.equal(result.status, 200)
      assert.match(result.body, /Hello, CSP!/)
      assert.deepEqual(await page.evaluate(() => window.wsdsTest.violations), [])
      await page.close()
    })
  }

  it('passes 1000 of 1000 enforced engine checks under a strict CSP (program form), timing challenge to answer', async () => {
    const before = { ...s.gateway.stats.engineChecks.chromium }
    const page = await openPage(STRICT_CSP)
    const r = await page.evaluate((k) => window.wsdsTest.batch(k, 1000), keys)
    assert.deepEqual(r.failed, [])
    assert.equal(r.verified, 1000)
    const after = s.gateway.stats.engineChecks.chromium
    assert.equal(after.match - before.match, 1000)
    assert.equal(after.mismatch - before.mismatch, 0)
    assert.equal(after.missing - before.missing, 0)
    assert.deepEqual(await page.evaluate(() => window.wsdsTest.violations), [])
    console.log(`# chromium program form: median challenge->answer ${median(r.answerMs).toFixed(3)} ms over ${r.answerMs.length}`)
    await page.close()
  })

  it('passes 1000 of 1000 enforced engine checks in the code form on a page without a CSP', async () => {
    const before = s.gateway.stats.engineChecks.chromium.match
    const page = await openPage(null)
    const r = await page.evaluate((k) => window.wsdsTest.batch(k, 1000, ['code']), keys)
    assert.deepEqual(r.failed, [])
    assert.equal(r.verified, 1000)
    assert.equal(s.gateway.stats.engineChecks.chromium.match - before, 1000)
    console.log(`# chromium code form: median challenge->answer ${median(r.answerMs).toFixed(3)} ms over ${r.answerMs.length}`)
    await page.close()
  })

  it('the policy is really in force: a page that insists on the code form fails with ERR_CONFIG and a reported eval violation', async () => {
    const page = await openPage(STRICT_CSP)
    const error = await page.evaluate((k) => window.wsdsTest.single(k, ['code']).then(() => 'verified', (e: { code?: string }) => String(e.code)), keys)
    assert.equal(error, 'ERR_CONFIG')
    const violations = await page.evaluate(() => window.wsdsTest.violations)
    assert.ok(violations.some((v) => v.startsWith('script-src')), JSON.stringify(violations))
    await page.close()
  })
})
