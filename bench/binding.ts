/**
 * Request binding's price (docs/benchmarks.md), measured in one run:
 * - protected requests per second through the gateway's /api proxy for a bound connection
 *   (every request verifies a WSDS-Signature HMAC, cached admission), against the same
 *   reverse proxy with no authentication (bench/servers/plain-proxy.ts), both driven by wrk
 *   with the same keep-alive load and the same request headers, in rotation with an unbound
 *   connection on a second gateway; next to the req/s ratio, server CPU per request of each
 *   (from /proc, over each wrk round), which the load generator's noise does not move;
 * - handshakes per gateway CPU-second with binding on (bound clients: ECDH + HKDF per
 *   connection on the gateway) against off, counted from /proc for the gateway process only.
 *
 *   node --import tsx bench/binding.ts
 *
 * Knobs: BENCH_DURATION_MS (per wrk round, default 5000; the signature is made before each
 * round and reused through it, so keep a round under WSDS_BINDING_WINDOW_MS, 30 s),
 * BENCH_ROUNDS (2), BENCH_HANDSHAKES (1000 per side; 0 = requests only), BENCH_CONCURRENCY (16).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { bindOffer, boundHandshake, type BindingTarget } from '../test/contracts/binding-suite.ts'
import { openSocket, solve, verifiedHandshake } from '../test/helpers/ws-client.ts'
import { ORIGIN, killAll, log, start, stop } from './lib/common.ts'
import { processCpuMs } from './lib/stats.ts'
import { runWrk } from './lib/wrk.ts'

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const HANDSHAKES = Number(process.env.BENCH_HANDSHAKES ?? 1000)
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16)
const PATH = '/api/greeting?who=bench'

const dir = mkdtempSync(join(tmpdir(), 'wsds-bench-binding-'))
const keySet = generateKeySet(createRandomPool(), { id: 'bench-binding' })
const keysFile = join(dir, 'keys.json')
writeFileSync(keysFile, JSON.stringify(keySet))
process.once('exit', () => {
  killAll()
  rmSync(dir, { recursive: true, force: true })
})

const gatewayEnv = (binding: string, upstream: string) => ({
  PORT: '0',
  WSDS_UPSTREAM: upstream,
  WSDS_ALLOWED_ORIGINS: ORIGIN,
  WSDS_KEYS_FILE: keysFile,
  WSDS_RATE_LIMIT: 'off',
  WSDS_DEMO: 'off',
  WSDS_BINDING: binding,
})

/** `count` handshakes, `concurrency` at a time; bound ones offer a key (made before the clock starts). */
async function handshakes(wsUrl: string, count: number, bound: boolean): Promise<void> {
  const offers = bound ? await Promise.all(Array.from({ length: count }, () => bindOffer())) : []
  let next = 0
  const hostname = new URL(ORIGIN).hostname
  const one = async (i: number) => {
    const client = await openSocket(wsUrl, { origin: ORIGIN })
    client.send(bound ? { action: 'hello', v: 1, bind: offers[i]!.bind } : { action: 'hello', v: 1 })
    await client.expect('connection')
    const challenge = await client.expect('challenge')
    client.send({ action: 'answer', token: challenge.token, result: await solve(challenge, keySet.keys, hostname) })
    const verified = await client.expect('verified')
    if (bound !== (verified.bind !== undefined)) throw new Error('binding not as expected')
    await client.close()
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) await one(next++)
  }))
}

const upstream = await start('upstream', 'servers/upstream.ts')
const plain = await start('plain-proxy', 'servers/plain-proxy.ts', { env: { BENCH_UPSTREAM: upstream.info.url } })
const bound = await start('gateway-bound', 'servers/gateway.ts', { env: gatewayEnv('optional', upstream.info.url) })
const unbound = await start('gateway-off', 'servers/gateway.ts', { env: gatewayEnv('off', upstream.info.url) })

// Requests: one bound connection on the bound gateway, one unbound connection on the other,
// and the plain proxy, in rotation. Every client sends the same request (the plain proxy gets
// the bound client's headers too, so both forward the same bytes) and the signature is made
// afresh before each round, so rounds of any length stay inside the window.
const target: BindingTarget = { wsUrl: bound.info.wsUrl, restUrl: bound.info.url, origin: ORIGIN, keySet, protectedPath: PATH, windowMs: 30_000, exactCloseCodes: true, close: async () => {} }
const conn = await boundHandshake(target)
const plainConn = await verifiedHandshake(unbound.info.wsUrl, { origin: ORIGIN, keys: keySet.keys })
const boundHeaders = async () => ({ connectionId: conn.connectionId, 'WSDS-Signature': await conn.sign('GET', PATH) })
const check = await fetch(bound.info.url + PATH, { headers: await boundHeaders() })
if (check.status !== 200) throw new Error(`signed request refused: ${check.status}`)
const wrkOptions = { connections: 32, threads: 1 }
interface RequestSide {
  name: string
  child: typeof bound
  url: string
  headers: () => Promise<Record<string, string>>
  perSecond: number[]
  requests: number
  serverCpuMs: number
  upstreamCpuMs: number
}
const side = (name: string, child: typeof bound, headers: () => Promise<Record<string, string>>): RequestSide => ({ name, child, url: child.info.url + PATH, headers, perSecond: [], requests: 0, serverCpuMs: 0, upstreamCpuMs: 0 })
const plainSide = side('plain proxy', plain, boundHeaders)
const boundSide = side('gateway, bound', bound, boundHeaders)
const unboundSide = side('gateway, unbound', unbound, async () => ({ connectionId: plainConn.connectionId }))
const sides = [plainSide, boundSide, unboundSide]
for (const s of sides) await runWrk({ url: s.url, headers: await s.headers(), ...wrkOptions, durationMs: 1000 }) // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const s of round % 2 === 0 ? sides : [...sides].reverse()) {
    const headers = await s.headers()
    const cpu0 = processCpuMs(s.child.pid)
    const up0 = processCpuMs(upstream.pid)
    const r = await runWrk({ url: s.url, headers, ...wrkOptions, durationMs: DURATION_MS })
    s.serverCpuMs += processCpuMs(s.child.pid) - cpu0
    s.upstreamCpuMs += processCpuMs(upstream.pid) - up0
    if (r.non2xx > 0 || r.errors > 0) throw new Error(`${s.name}: ${r.non2xx} non-2xx and ${r.errors} errors`)
    s.perSecond.push(r.total / r.seconds)
    s.requests += r.total
  }
  log(`round ${round + 1}: ${sides.map((s) => `${s.name} ${Math.round(s.perSecond.at(-1)!)} req/s`).join(', ')}`)
}
await conn.client.close()
await plainConn.client.close()

// Handshakes per gateway CPU-second, bound vs off, each on its own gateway process.
const perCpuSecond = async (child: typeof bound, isBound: boolean) => {
  await handshakes(child.info.wsUrl, Math.min(50, HANDSHAKES), isBound) // warm-up
  const before = processCpuMs(child.pid)
  await handshakes(child.info.wsUrl, HANDSHAKES, isBound)
  return HANDSHAKES / ((processCpuMs(child.pid) - before) / 1000)
}
// BENCH_HANDSHAKES=0 skips this part (request figures only).
const hsOff = HANDSHAKES > 0 ? await perCpuSecond(unbound, false) : NaN
const hsOn = HANDSHAKES > 0 ? await perCpuSecond(bound, true) : NaN

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!
const cpuUs = (s: RequestSide) => (s.serverCpuMs * 1000) / Math.max(1, s.requests)
const upstreamUs = (s: RequestSide) => (s.upstreamCpuMs * 1000) / Math.max(1, s.requests)
const sideReport = (s: RequestSide) => ({ perSecond: median(s.perSecond), rounds: s.perSecond.map(Math.round), serverCpuUsPerRequest: cpuUs(s), upstreamCpuUsPerRequest: upstreamUs(s) })
const report = {
  protectedRequests: {
    bound: sideReport(boundSide),
    unbound: sideReport(unboundSide),
    plainProxy: sideReport(plainSide),
    ratio: median(boundSide.perSecond) / median(plainSide.perSecond),
    target: 0.85,
    // Requests per server CPU-second, bound / plain: the same figure without the load generator's noise.
    cpuRatio: cpuUs(plainSide) / cpuUs(boundSide),
    unboundCpuRatio: cpuUs(plainSide) / cpuUs(unboundSide),
  },
  handshakesPerCpuSecond: { bindingOn: hsOn, bindingOff: hsOff, ratio: hsOn / hsOff, target: 0.8 },
  settings: { durationMs: DURATION_MS, rounds: ROUNDS, handshakes: HANDSHAKES, concurrency: CONCURRENCY, wrkConnections: 32 },
}
const pass = (ok: boolean) => (ok ? 'PASS' : 'MISS')
const f = (n: number, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
const pr = report.protectedRequests
const lines = [
  `| figure | WSDS | plain proxy | ratio | target | verdict |`,
  `| --- | ---: | ---: | ---: | --- | --- |`,
  `| protected req/s, bound (median of ${ROUNDS} rounds) | ${f(pr.bound.perSecond)} | ${f(pr.plainProxy.perSecond)} | ${f(pr.ratio, 2)}x | >= 0.85x | ${pass(pr.ratio >= 0.85)} |`,
  `|   server CPU per request, us, bound | ${f(cpuUs(boundSide), 1)} | ${f(cpuUs(plainSide), 1)} | ${f(pr.cpuRatio, 2)}x (requests per CPU-second) | >= 0.85x | ${pass(pr.cpuRatio >= 0.85)} |`,
  `|   server CPU per request, us, unbound (context) | ${f(cpuUs(unboundSide), 1)} | ${f(cpuUs(plainSide), 1)} | ${f(pr.unboundCpuRatio, 2)}x | | |`,
  `|   upstream CPU per request, us, bound / unbound | ${f(upstreamUs(boundSide), 1)} / ${f(upstreamUs(unboundSide), 1)} | ${f(upstreamUs(plainSide), 1)} | | | |`,
  HANDSHAKES > 0
    ? `| handshakes per gateway CPU-second, binding on / off | ${f(hsOn)} | ${f(hsOff)} | ${f(hsOn / hsOff, 2)}x | >= 0.80x | ${pass(hsOn / hsOff >= 0.8)} |`
    : '| handshakes per gateway CPU-second | skipped (BENCH_HANDSHAKES=0) | | | | |',
]
process.stderr.write(lines.join('\n') + '\n')
process.stdout.write(JSON.stringify(report, null, 2) + '\n')
for (const child of [bound, unbound, plain, upstream]) await stop(child)
process.exit(0)
