/**
 * Request binding's price (docs/benchmarks.md), measured in one run:
 * - protected requests per second through the gateway's /api proxy for a bound connection
 *   (every request verifies a WSDS-Signature HMAC, cached admission), against the same
 *   reverse proxy with no authentication (bench/servers/plain-proxy.ts), both driven by wrk
 *   with the same keep-alive load, alternating in rounds;
 * - handshakes per gateway CPU-second with binding on (bound clients: ECDH + HKDF per
 *   connection on the gateway) against off, counted from /proc for the gateway process only.
 *
 *   node --import tsx bench/binding.ts
 *
 * Knobs: BENCH_DURATION_MS (per wrk round, default 5000; a signature is reused for the whole
 * run, so keep rounds x duration under WSDS_BINDING_WINDOW_MS, 30 s), BENCH_ROUNDS (2),
 * BENCH_HANDSHAKES (1000 per side), BENCH_CONCURRENCY (16).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { bindOffer, boundHandshake, type BindingTarget } from '../test/contracts/binding-suite.ts'
import { openSocket, solve } from '../test/helpers/ws-client.ts'
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

// Requests: one bound connection, its signature reused (valid for the window).
const target: BindingTarget = { wsUrl: bound.info.wsUrl, restUrl: bound.info.url, origin: ORIGIN, keySet, protectedPath: PATH, windowMs: 30_000, exactCloseCodes: true, close: async () => {} }
const conn = await boundHandshake(target)
const headers = { connectionId: conn.connectionId, 'WSDS-Signature': await conn.sign('GET', PATH) }
const check = await fetch(bound.info.url + PATH, { headers })
if (check.status !== 200) throw new Error(`signed request refused: ${check.status}`)
const wrkOptions = { connections: 32, threads: 1, durationMs: DURATION_MS }
const rates: { bound: number[]; plain: number[] } = { bound: [], plain: [] }
for (let round = 0; round < ROUNDS; round++) {
  const p = await runWrk({ url: plain.info.url + PATH, headers: {}, ...wrkOptions })
  const b = await runWrk({ url: bound.info.url + PATH, headers, ...wrkOptions })
  if (b.non2xx > 0 || b.errors > 0) throw new Error(`bound run had ${b.non2xx} non-2xx and ${b.errors} errors`)
  rates.plain.push(p.total / p.seconds)
  rates.bound.push(b.total / b.seconds)
  log(`round ${round + 1}: plain ${Math.round(rates.plain.at(-1)!)} req/s, bound ${Math.round(rates.bound.at(-1)!)} req/s`)
}
await conn.client.close()

// Handshakes per gateway CPU-second, bound vs off, each on its own gateway process.
const perCpuSecond = async (child: typeof bound, isBound: boolean) => {
  await handshakes(child.info.wsUrl, Math.min(50, HANDSHAKES), isBound) // warm-up
  const before = processCpuMs(child.pid)
  await handshakes(child.info.wsUrl, HANDSHAKES, isBound)
  return HANDSHAKES / ((processCpuMs(child.pid) - before) / 1000)
}
const hsOff = await perCpuSecond(unbound, false)
const hsOn = await perCpuSecond(bound, true)

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!
const report = {
  protectedRequests: { boundPerSecond: median(rates.bound), plainProxyPerSecond: median(rates.plain), ratio: median(rates.bound) / median(rates.plain), target: 0.85 },
  handshakesPerCpuSecond: { bindingOn: hsOn, bindingOff: hsOff, ratio: hsOn / hsOff, target: 0.8 },
  settings: { durationMs: DURATION_MS, rounds: ROUNDS, handshakes: HANDSHAKES, concurrency: CONCURRENCY, wrkConnections: 32 },
}
process.stdout.write(JSON.stringify(report, null, 2) + '\n')
for (const child of [bound, unbound, plain, upstream]) await stop(child)
process.exit(0)
