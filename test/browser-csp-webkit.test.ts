/**
 * The strict-CSP page of test/browser-csp.test.ts in WebKit (WebKitGTK's WebKitWebDriver
 * under Xvfb, plain W3C WebDriver over HTTP): CSP, connect-src 'self' for ws: and the HTML
 * parser are engine-dependent, so the program form and enforced engine checks are checked
 * in the third engine too.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { loadConfig } from '../src/server/config.ts'
import { bundlePageScript, startCspFront, STRICT_CSP, type CspFront } from './helpers/csp-front.ts'
import { startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { freePort, requireBinary } from './helpers/services.ts'

const driver = requireBinary('WebKitWebDriver', ['/usr/bin/WebKitWebDriver'])
const xvfb = requireBinary('xvfb-run', ['/usr/bin/xvfb-run'])
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('strict CSP page in WebKit', { skip: driver.skip || xvfb.skip }, () => {
  let s: TestServer
  let front: CspFront
  let proc: ChildProcess
  let base: string
  let session: string

  async function wd(method: string, path: string, body?: unknown): Promise<any> {
    const res = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) })
    const json = (await res.json()) as { value: any }
    if (!res.ok) throw new Error(`WebDriver ${method} ${path}: ${JSON.stringify(json.value).slice(0, 300)}`)
    return json.value
  }
  /** Runs `call` (a wsdsTest method call on the page) and returns its result. */
  const run = (call: string, args: unknown[]) =>
    wd('POST', `/session/${session}/execute/async`, {
      script: `const done = arguments[arguments.length - 1]; ${call}.then(done, (e) => done({ error: String(e && e.code || e) }))`,
      args,
    })

  before(async () => {
    const frontPort = await freePort()
    const config = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: `http://127.0.0.1:${frontPort}`, WSDS_RATE_LIMIT: 'off', WSDS_ENGINE_CHECKS: 'enforce' })
    s = await startTestServer({ ...config, keySets: [testKeySet] })
    front = await startCspFront(s.url, await bundlePageScript(), frontPort)
    front.setPolicy(STRICT_CSP)
    const port = await freePort()
    base = `http://127.0.0.1:${port}`
    proc = spawn(xvfb.path!, ['-a', driver.path!, `--port=${port}`], { stdio: 'ignore', detached: true })
    for (let i = 0; ; i++) {
      try {
        await wd('GET', '/status')
        break
      } catch (e) {
        if (i > 100) throw e
        await sleep(100)
      }
    }
    const created = await wd('POST', '/session', { capabilities: { alwaysMatch: { 'webkitgtk:browserOptions': { args: ['--automation'] } } } })
    session = created.sessionId
    await wd('POST', `/session/${session}/timeouts`, { script: 120_000 })
    await wd('POST', `/session/${session}/url`, { url: `${front.url}/csp/` })
    for (let i = 0; !(await wd('POST', `/session/${session}/execute/sync`, { script: 'return "wsdsTest" in window', args: [] })); i++) {
      if (i > 100) throw new Error('page script did not load')
      await sleep(100)
    }
  })
  after(async () => {
    if (session) await wd('DELETE', `/session/${session}`).catch(() => {})
    if (proc?.pid) {
      try {
        process.kill(-proc.pid)
      } catch {
        // Already gone.
      }
    }
    await front?.close()
    await s?.close()
  })

  const keys = [...testKeySet.keys]

  it('verifies with no option under script-src \'self\' and calls the API, with no CSP violation', async () => {
    const r = await run('window.wsdsTest.single(arguments[0])', [keys])
    assert.equal(r.status, 200, JSON.stringify(r))
    assert.match(r.body, /Hello, CSP!/)
    assert.deepEqual(await wd('POST', `/session/${session}/execute/sync`, { script: 'return window.wsdsTest.violations', args: [] }), [])
  })

  it('passes 200 of 200 enforced engine checks under the strict policy', async () => {
    const before = s.gateway.stats.engineChecks.safari.match
    const r = await run('window.wsdsTest.batch(arguments[0], 200)', [keys])
    assert.deepEqual(r.failed, [])
    assert.equal(r.verified, 200)
    assert.equal(s.gateway.stats.engineChecks.safari.match - before, 200)
    const sorted = [...(r.answerMs as number[])].sort((a, b) => a - b)
    console.log(`# webkit program form: median challenge->answer ${sorted[Math.floor(sorted.length / 2)]?.toFixed(3)} ms over ${sorted.length}`)
  })
})
