/**
 * Protected requests with the Redis store and the authenticator cache off
 * (WSDS_AUTH_CACHE_TTL_MS=0: one record read per request) against the memory store with its
 * cache, target >= 0.80x (docs/benchmarks.md, "Cluster"). Three gateways in one process on a
 * private redis-server: memory store (cache on), Redis store with batched reads (the
 * default, src/stores/redis-read-batch.ts) and Redis store with one GET per read
 * (`batchReads: false`), each with its own port. wrk (32 keep-alive connections, a native
 * process) drives one at a time in alternating rounds, so only one gateway is busy in any
 * window and the process's CPU over a round is that gateway's: requests per gateway
 * CPU-second is the figure a busy machine does not move much; req/s is printed next to it.
 * The greeting is answered by the gateway itself (no upstream), as in the cluster section.
 *
 *   node --import tsx bench/redis-requests.ts
 *
 * Knobs: BENCH_ROUNDS (4 per side), BENCH_DURATION_MS (3000 per round).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { generateKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { loadConfig } from '../src/server/config.ts'
import { startServer } from '../src/server/server.ts'
import { connectRedis, createRedisStore } from '../src/stores/redis.ts'
import { startRedisServer } from '../test/helpers/redis.ts'
import { findBinary } from '../test/helpers/services.ts'
import { verifiedHandshake } from '../test/helpers/ws-client.ts'
import { ORIGIN, log } from './lib/common.ts'
import { runWrk } from './lib/wrk.ts'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4)
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000)
const TARGET = 0.8
const PATH = '/api/greeting?who=bench'

const binary = findBinary('redis-server', ['/usr/bin/redis-server'])
if (binary === null) throw new Error('redis-server not installed (apt-get install redis-server)')
const dir = mkdtempSync(join(tmpdir(), 'wsds-bench-redis-'))
const keySet = generateKeySet(createRandomPool(), { id: 'bench-redis' })
writeFileSync(join(dir, 'keys.json'), JSON.stringify(keySet))
const redis = await startRedisServer(binary)
process.once('exit', () => rmSync(dir, { recursive: true, force: true }))

const env = (extra: Record<string, string> = {}) => ({
  PORT: '0',
  HOST: '127.0.0.1',
  WSDS_ALLOWED_ORIGINS: ORIGIN,
  WSDS_KEYS_FILE: join(dir, 'keys.json'),
  WSDS_RATE_LIMIT: 'off',
  WSDS_DEMO: 'off',
  WSDS_LOG_LEVEL: 'silent',
  ...extra,
})
const logger = pino({ level: 'silent' })
const memory = await startServer(loadConfig(env()), { logger })
const redisStore = async (batchReads: boolean) => {
  const store = createRedisStore({ client: connectRedis(redis.url), batchReads, closeClient: true })
  if (!(await store.ready(5000))) throw new Error('redis store not ready')
  return store
}
const cold = { WSDS_AUTH_CACHE_TTL_MS: '0' }
const batched = await startServer(loadConfig(env(cold)), { logger, store: await redisStore(true), rateLimiter: null })
const single = await startServer(loadConfig(env(cold)), { logger, store: await redisStore(false), rateLimiter: null })
const wsUrl = (url: string) => url.replace('http', 'ws') + '/wsds'
const onMemory = await verifiedHandshake(wsUrl(memory.url), { origin: ORIGIN, keys: keySet.keys })
// Both Redis gateways read the same record from the shared Redis.
const onRedis = await verifiedHandshake(wsUrl(batched.url), { origin: ORIGIN, keys: keySet.keys })

interface Side {
  name: string
  url: string
  connectionId: string
  cpuUs: number
  requests: number
  rates: number[]
}
const side = (name: string, url: string, connectionId: string): Side => ({ name, url, connectionId, cpuUs: 0, requests: 0, rates: [] })
const sides = [side('memory store, cache on', memory.url, onMemory.connectionId), side('Redis, cache off, batched reads', batched.url, onRedis.connectionId), side('Redis, cache off, one GET per read', single.url, onRedis.connectionId)]
const [mem, bat, one] = sides as [Side, Side, Side]
const wrk = (s: Side, durationMs: number) => runWrk({ url: s.url + PATH, headers: { connectionId: s.connectionId }, connections: 32, threads: 1, durationMs })
for (const s of sides) await wrk(s, 1000) // warm-up, not measured
for (let round = 0; round < ROUNDS; round++) {
  for (const s of round % 2 === 0 ? sides : [...sides].reverse()) {
    const before = process.cpuUsage()
    const r = await wrk(s, DURATION_MS)
    const used = process.cpuUsage(before)
    if (r.non2xx > 0 || r.errors > 0) throw new Error(`${s.name}: ${r.non2xx} non-2xx and ${r.errors} errors`)
    s.cpuUs += used.user + used.system
    s.requests += r.total
    s.rates.push(r.total / r.seconds)
  }
  log(`round ${round + 1}: ${sides.map((s) => `${s.name} ${Math.round(s.rates.at(-1)!)} req/s`).join(', ')}`)
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!
const us = (s: Side) => s.cpuUs / Math.max(1, s.requests)
const f = (n: number, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS')
const perCpu = us(mem) / us(bat)
const perSecond = median(bat.rates) / median(mem.rates)
const rows = [
  '| figure | Redis, cache off | memory store, cache on | ratio | target | verdict |',
  '| --- | ---: | ---: | ---: | --- | --- |',
  `| requests per gateway CPU-second (batched reads) | ${f(1e6 / us(bat))} | ${f(1e6 / us(mem))} | ${f(perCpu, 2)}x | >= ${f(TARGET, 2)}x | ${verdict(perCpu >= TARGET)} |`,
  `|   gateway CPU per request, us (batched / one GET per read) | ${f(us(bat), 1)} / ${f(us(one), 1)} | ${f(us(mem), 1)} | | | |`,
  `| protected req/s, median of ${ROUNDS} rounds (batched reads) | ${f(median(bat.rates))} | ${f(median(mem.rates))} | ${f(perSecond, 2)}x | >= ${f(TARGET, 2)}x | ${verdict(perSecond >= TARGET)} |`,
  `|   one GET per read (context) | ${f(median(one.rates))} | | ${f(median(one.rates) / median(mem.rates), 2)}x | | |`,
]
process.stdout.write(rows.join('\n') + '\n')
await Promise.all([onMemory.client.close(), onRedis.client.close()])
await Promise.all([memory.close(), batched.close(), single.close()])
await redis.stop()
process.exit(0)
