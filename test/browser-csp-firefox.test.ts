/**
 * The strict-CSP page of test/browser-csp.test.ts in Firefox (firefox-esr, WebDriver BiDi
 * through puppeteer-core): CSP and the HTML parser are engine-dependent, so the program form
 * and enforced engine checks are checked in a second engine.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import puppeteer, { type Browser, type Page } from 'puppeteer-core'
import { loadConfig } from '../src/server/config.ts'
import { bundlePageScript, startCspFront, STRICT_CSP, type CspFront } from './helpers/csp-front.ts'
import { startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { freePort, requireBinary } from './helpers/services.ts'

const firefox = requireBinary('firefox-esr', ['/usr/bin/firefox-esr'])

describe('strict CSP page in Firefox', { skip: firefox.skip }, () => {
  let browser: Browser
  let s: TestServer
  let front: CspFront
  before(async () => {
    // The page's origin is the front's, so the gateway behind it allows that origin.
    const frontPort = await freePort()
    const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: `http://127.0.0.1:${frontPort}`, WSDS_RATE_LIMIT: 'off', WSDS_ENGINE_CHECKS: 'enforce' })
    s = await startTestServer({ ...base, keySets: [testKeySet] })
    front = await startCspFront(s.url, await bundlePageScript(), frontPort)
    browser = await puppeteer.launch({ browser: 'firefox', executablePath: firefox.path!, headless: true })
  })
  after(async () => {
    await browser?.close()
    await front?.close()
    await s?.close()
  })

  async function openPage(csp: string | null): Promise<Page> {
    front.setPolicy(csp)
    const page = await browser.newPage()
    await page.goto(`${front.url}/csp/`)
    await page.waitForFunction(() => 'wsdsTest' in window)
    return page
  }
  const keys = [...testKeySet.keys]

  it('verifies with no option under script-src \'self\' and calls the API, with no CSP violation', async () => {
    const page = await openPage(STRICT_CSP)
    const r = await page.evaluate((k) => window.wsdsTest.single(k), keys)
    assert.equal(r.status, 200)
    assert.match(r.body, /Hello, CSP!/)
    assert.deepEqual(await page.evaluate(() => window.wsdsTest.violations), [])
    await page.close()
  })

  it('passes 200 of 200 enforced engine checks under the strict policy', async () => {
    const before = s.gateway.stats.engineChecks.firefox.match
    const page = await openPage(STRICT_CSP)
    const r = await page.evaluate((k) => window.wsdsTest.batch(k, 200), keys)
    assert.deepEqual(r.failed, [])
    assert.equal(r.verified, 200)
    assert.equal(s.gateway.stats.engineChecks.firefox.match - before, 200)
    const sorted = [...r.answerMs].sort((a, b) => a - b)
    console.log(`# firefox program form: median challenge->answer ${sorted[Math.floor(sorted.length / 2)]?.toFixed(3)} ms over ${sorted.length}`)
    await page.close()
  })
})
