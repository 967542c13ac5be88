/**
 * A blank page in real Chromium with the SDK's proof-of-work solver loaded (bundled by
 * esbuild from src/client/pow.ts), served over plain http on a non-localhost name, so it is
 * not a secure context, as on a plain-http deployment. Used by test/pow-browser.test.ts and
 * bench/pow.ts.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { build } from 'esbuild'
import type { Browser, Page } from 'playwright-core'

export interface SolveRun {
  bits: number
  ms: number
  /** requestAnimationFrame callbacks during the solve, and the longest gap between two, ms. */
  frames: number
  maxFrameGapMs: number
  nonce: string
  token: string
}

export interface PowPage {
  page: Page
  /** Solves one random token at `bits` in the page while a rAF loop runs. */
  solve(bits: number): Promise<SolveRun>
  close(): Promise<void>
}

// Solves a random token while a requestAnimationFrame loop animates a box and records gaps.
const PAGE_SCRIPT = `
async function runSolve(bits) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const bytes = crypto.getRandomValues(new Uint8Array(22))
  const token = Array.from(bytes, (b) => alphabet[b & 63]).join('')
  let frames = 0, last = performance.now(), maxGap = 0, running = true
  const box = document.getElementById('box')
  const loop = (t) => {
    frames++
    maxGap = Math.max(maxGap, t - last)
    last = t
    box.style.transform = 'translateX(' + (frames % 100) + 'px)'
    if (running) requestAnimationFrame(loop)
  }
  await new Promise((r) => requestAnimationFrame((t) => { last = t; requestAnimationFrame(loop); r() }))
  await new Promise((r) => setTimeout(r, 30))
  frames = 0
  last = performance.now()
  maxGap = 0
  const started = performance.now()
  const work = await wsdsPow.solvePow(token, bits)
  const ms = performance.now() - started
  maxGap = Math.max(maxGap, performance.now() - last)
  running = false
  return { bits, ms, frames, maxFrameGapMs: maxGap, nonce: work.nonce, token }
}`

export async function openPowPage(browser: Browser): Promise<PowPage> {
  const bundle = await build({
    entryPoints: [new URL('../../src/client/pow.ts', import.meta.url).pathname],
    bundle: true,
    minify: true,
    format: 'iife',
    globalName: 'wsdsPow',
    write: false,
    target: 'es2022',
  })
  const js = bundle.outputFiles[0]!.text
  const html = `<!doctype html><meta charset="utf-8"><title>pow</title><body><div id="box" style="width:50px;height:50px;background:#08f"></div><script src="/pow.js"></script><script>${PAGE_SCRIPT}</script>`
  const server: Server = createServer((req, res) => {
    if (req.url === '/pow.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(js)
    else res.writeHead(200, { 'content-type': 'text/html' }).end(html)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const context = await browser.newContext()
  const page = await context.newPage()
  await page.goto(`http://pow.wsds.test:${port}/`)
  return {
    page,
    // A string, not a function: tsx's name helpers would not exist inside the page.
    solve: (bits) => page.evaluate(`runSolve(${Number(bits)})`) as Promise<SolveRun>,
    async close() {
      await context.close()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}
