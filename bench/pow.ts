/**
 * Proof-of-work figures for docs/benchmarks.md ("Proof of work"), run on its own:
 *   node --import tsx bench/pow.ts            (BENCH_POW_SOLVES=30, BENCH_POW_VERIFIES=200000)
 * - the SDK's solver in headless Chromium (test/helpers/pow-page.ts): solve time at 12, 16 and
 *   18 bits, median and p95, plus frames and the longest frame gap while it ran;
 * - the gateway's check: verifyPow with node:crypto, one hash, per call; and the same call
 *   through the lifecycle's answer path is that plus the answer check measured in the core bench.
 */
import { randomBytes } from 'node:crypto'
import { loadavg, cpus } from 'node:os'
import { solvePow } from '../src/client/pow.ts'
import { verifyPow } from '../src/core/pow.ts'
import { powHash } from '../src/gateway/gateway.ts'
import { launchBrowser } from '../test/helpers/browser.ts'
import { openPowPage, type SolveRun } from '../test/helpers/pow-page.ts'

const SOLVES = Number(process.env.BENCH_POW_SOLVES ?? 30)
const VERIFIES = Number(process.env.BENCH_POW_VERIFIES ?? 200_000)
const BITS = (process.env.BENCH_POW_BITS ?? '12,16,18').split(',').map(Number)

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
const f = (n: number, d = 0) => n.toFixed(d)

async function verifyCost(): Promise<void> {
  const sha256 = powHash
  const tokens = Array.from({ length: 64 }, () => randomBytes(16).toString('base64url'))
  const works = await Promise.all(tokens.map((t) => solvePow(t, 12)))
  let ok = 0
  for (let i = 0; i < 10_000; i++) ok += verifyPow(tokens[i & 63]!, 12, works[i & 63], sha256).ok ? 1 : 0
  const runs: number[] = []
  for (let r = 0; r < 5; r++) {
    const started = process.hrtime.bigint()
    for (let i = 0; i < VERIFIES; i++) ok += verifyPow(tokens[i & 63]!, 12, works[i & 63], sha256).ok ? 1 : 0
    runs.push(Number(process.hrtime.bigint() - started) / VERIFIES / 1000)
  }
  runs.sort((a, b) => a - b)
  console.log(`gateway verify (verifyPow + the gateway's node:crypto SHA-256), ${VERIFIES} calls x 5 runs: median ${f(runs[2]!, 2)} µs, best ${f(runs[0]!, 2)} µs, worst ${f(runs[4]!, 2)} µs per verify (${ok} ok)`)
}

async function browserSolves(): Promise<void> {
  const browser = await launchBrowser()
  const pow = await openPowPage(browser)
  const version = browser.version()
  try {
    console.log(`\nChromium ${version}, SDK solver on the main thread (8 ms slices), ${SOLVES} solves per difficulty, random tokens`)
    console.log('| bits | median ms | p95 ms | max ms | mean ms | frames/s during solves | longest frame gap ms (p95 of solves) |')
    console.log('| ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for (const bits of BITS) {
      const runs: SolveRun[] = []
      for (let i = 0; i < SOLVES; i++) runs.push(await pow.solve(bits))
      const ms = runs.map((r) => r.ms).sort((a, b) => a - b)
      const gaps = runs.map((r) => r.maxFrameGapMs).sort((a, b) => a - b)
      const totalMs = ms.reduce((a, b) => a + b, 0)
      const frames = runs.reduce((a, r) => a + r.frames, 0)
      console.log(`| ${bits} | ${f(quantile(ms, 0.5))} | ${f(quantile(ms, 0.95))} | ${f(ms.at(-1)!)} | ${f(totalMs / runs.length)} | ${f((frames * 1000) / totalMs)} | ${f(quantile(gaps, 0.95))} |`)
    }
  } finally {
    await pow.close()
    await browser.close()
  }
}

console.log(`machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at start`)
await verifyCost()
if (SOLVES > 0) await browserSolves()
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} at end`)
