/**
 * Proof of work in real headless Chromium: the SDK's solver keeps the page responsive (a
 * requestAnimationFrame loop keeps running during the search), on a page that is not a
 * secure context; and the demo page verifies against a gateway that asks for work.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type { Browser } from 'playwright-core'
import { hasLeadingZeroBits, powInput } from '../src/core/pow.ts'
import { loadConfig } from '../src/server/config.ts'
import { chromiumBinary, launchBrowser } from './helpers/browser.ts'
import { openPowPage, type PowPage } from './helpers/pow-page.ts'
import { startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { freePort } from './helpers/services.ts'

describe('proof of work in headless Chromium', { skip: chromiumBinary.skip }, () => {
  let browser: Browser
  let pow: PowPage
  before(async () => {
    browser = await launchBrowser()
    pow = await openPowPage(browser)
  })
  after(async () => {
    await pow?.close()
    await browser?.close()
  })

  it('solves without crypto.subtle and the hash checks out with node:crypto', async () => {
    assert.equal(await pow.page.evaluate(() => typeof crypto.subtle), 'undefined', 'page is not a secure context')
    const run = await pow.solve(12)
    assert.ok(hasLeadingZeroBits(createHash('sha256').update(powInput(run.token, run.nonce)).digest(), 12))
  })

  it('keeps a requestAnimationFrame loop running during an 18-bit solve', async () => {
    // Several solves: a lucky one can finish within a frame or two.
    let longest = { ms: 0, frames: 0, maxFrameGapMs: 0 }
    for (let i = 0; i < 5 && longest.ms < 300; i++) {
      const run = await pow.solve(18)
      if (run.ms > longest.ms) longest = run
    }
    assert.ok(longest.ms >= 100, `no solve took long enough to judge (${longest.ms} ms)`)
    // A blocking search would give 0-1 frames and a gap as long as the solve. Generous margins:
    // the machine is shared, so frames may be late, but they must keep coming.
    assert.ok(longest.frames >= Math.floor(longest.ms / 100), `${longest.frames} frames in ${Math.round(longest.ms)} ms`)
    assert.ok(longest.maxFrameGapMs < Math.max(250, longest.ms / 2), `longest frame gap ${Math.round(longest.maxFrameGapMs)} ms of ${Math.round(longest.ms)} ms`)
  })

  describe('the demo page against a gateway with WSDS_POW_BITS=14', () => {
    let s: TestServer
    let port: number
    before(async () => {
      port = await freePort()
      const base = loadConfig({ PORT: String(port), WSDS_ALLOWED_ORIGINS: `http://app.wsds.test:${port}`, WSDS_RATE_LIMIT: 'off', WSDS_POW_BITS: '14' })
      s = await startTestServer({ ...base, keySets: [testKeySet], demo: true })
    })
    after(() => s?.close())

    it('verifies, solving the work, and shows the greeting', async () => {
      const context = await browser.newContext()
      const page = await context.newPage()
      const errors: string[] = []
      page.on('pageerror', (e) => errors.push(e.message))
      await page.goto(`http://app.wsds.test:${port}/`)
      await page.locator('#status', { hasText: 'verified' }).waitFor({ timeout: 15_000 })
      await page.locator('#greeting', { hasText: 'Hello, World!' }).waitFor({ timeout: 10_000 })
      assert.equal(s.gateway.stats.powIssued[14], 1)
      assert.equal(s.gateway.stats.powSolved, 1)
      assert.deepEqual(errors, [])
      await context.close()
    })
  })
})
