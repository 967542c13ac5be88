/**
 * `--only=cluster` (issue 3): gateway nodes sharing a private redis-server started here.
 *
 * 1. Revocation: nodes A and B (separate processes, WSDS_STORE=redis://...). The load
 *    generator verifies a socket on A, makes one protected call on B (200: B's cache now
 *    holds the id), closes the socket on A and polls B back to back until B answers 401
 *    (bench/load/main.ts `revocation`). BENCH_REVOCATIONS closes (1,000).
 * 2. Protected requests/s on a node with no auth cache (WSDS_AUTH_CACHE_TTL_MS=0: one Redis
 *    GET per request, auto-pipelined) and on a node with the default cache, each against a
 *    raw GET loop: the load generator's own ioredis connection keeping as many GETs of the
 *    same record in flight as autocannon keeps requests (32); and a memory-store node with its
 *    cache, the baseline of the cold node's target (>= 0.80x). Four subjects in rotation.
 * 3. Verified handshakes/s with the Redis store against the memory store: the core
 *    section's handshake phase, gateway-memory as the baseline.
 */
import { findBinary } from '../../test/helpers/services.ts'
import { startRedisServer, type RedisServer } from '../../test/helpers/redis.ts'
import { pidsByCmdline } from '../lib/procs.ts'
import type { Child } from '../lib/ipc.ts'
import type { SectionContext } from './context.ts'
import {
  DURATION_MS,
  HANDSHAKE_CONCURRENCY,
  HANDSHAKE_ROUNDS,
  REST_CONNECTIONS,
  TARGETS,
  atLeast,
  atMost,
  autocannonRun,
  busyWindows,
  fmt,
  handshakePhase,
  log,
  pairs,
  ratio,
  spread,
  start,
  stop,
  throughputPhase,
  verdict,
  x,
  type SectionResult,
  type Subject,
} from '../lib/common.ts'

const REVOCATIONS = Number(process.env.BENCH_REVOCATIONS ?? 1000)
/** Sockets verified (and B-warmed) at a time before they are closed one by one. */
const REVOCATION_BATCH = 50
const REVOCATION_GIVE_UP_MS = 2000
const REVOCATION_MAX_MS = 90_000
const CLUSTER_TARGETS = { revocationP99Ms: 50, coldVsMemoryRatio: 0.8 }
/** Rounds per subject in the cluster request phase (four subjects in rotation). */
const CLUSTER_REST_ROUNDS = 5

let redis: RedisServer | null = null

/** Stops the private redis-server if a section left it running (run.ts calls it at the end). */
export async function stopClusterServices(): Promise<void> {
  const r = redis
  redis = null
  await r?.stop()
}

export async function clusterSection(ctx: SectionContext): Promise<SectionResult> {
  const binary = findBinary('redis-server', ['/usr/bin/redis-server'])
  if (binary === null) throw new Error('redis-server not installed (apt-get install redis-server)')
  redis = await startRedisServer(binary)
  // redis-server rewrites its command line to `redis-server 127.0.0.1:<port>`.
  const redisPids = pidsByCmdline(`redis-server 127.0.0.1:${redis.port}`)
  if (redisPids.length === 0) log('could not find the redis-server process: its CPU counts as other processes')
  const redisEnv = (extra: Record<string, string> = {}) => ({ ...ctx.gatewayEnv(null), WSDS_STORE: redis!.url, ...extra })
  const gw = (name: string, env: Record<string, string>) => start(name, 'servers/gateway.ts', { env, execArgv: ctx.profileArgv(name) })
  try {
    const load = await start('load', 'load/main.ts', { env: ctx.benchEnv, execArgv: ctx.profileArgv('load') })

    // ---- 1. revocation ----
    const [nodeA, nodeB] = await Promise.all([gw('node-a', redisEnv()), gw('node-b', redisEnv())])
    log(`cluster 1/3 revocation: ${REVOCATIONS} closes on node A, polling node B until 401`)
    const rev = await load.call(
      'revocation',
      { wsUrlA: nodeA.info.wsUrl, urlB: nodeB.info.url, count: REVOCATIONS, batch: REVOCATION_BATCH, giveUpMs: REVOCATION_GIVE_UP_MS, maxMs: REVOCATION_MAX_MS },
      REVOCATION_MAX_MS + 30_000,
    )
    const stateB = await nodeB.call('gateway')
    await Promise.all([stop(nodeA), stop(nodeB)])
    if (rev.errors > 0) log(`revocation: ${rev.errors} errors, first: ${rev.firstError}`)

    // ---- 2. protected requests, cold and warm cache, against raw GETs ----
    const [cold, warm, memory] = await Promise.all([gw('cold', redisEnv({ WSDS_AUTH_CACHE_TTL_MS: '0' })), gw('warm', redisEnv()), gw('memory', ctx.gatewayEnv(null))])
    const { connectionId } = await load.call('verifyHold', { wsUrl: cold.info.wsUrl })
    // The memory node knows only its own connections: it gets one of its own.
    const { connectionId: memoryId } = await load.call('verifyHold', { wsUrl: memory.info.wsUrl })
    const key = `wsds:c:${connectionId}`
    const headers = { connectionId }
    const path = '/api/greeting?who=bench'
    const raw: Subject = {
      name: 'raw redis GET',
      pids: { redis: redisPids, load: [load.pid] },
      run: (warmupMs, durationMs) => load.call('redisGets', { redisUrl: redis!.url, key, concurrency: REST_CONNECTIONS, warmupMs, durationMs }),
    }
    const node = (c: Child, name: string, h = headers): Subject => ({ name, pids: { gateway: [c.pid], redis: redisPids, load: [load.pid] }, run: autocannonRun(load, c.info.url + path, h), wholeSeconds: true })
    const coldS = node(cold, 'cold cache node')
    const warmS = node(warm, 'warm cache node')
    const memoryS = node(memory, 'memory store node', { connectionId: memoryId })
    log(`cluster 2/3 protected requests/s: raw GET loop, cold-cache node, warm-cache node, memory-store node in rotation, ${CLUSTER_REST_ROUNDS} rounds each`)
    const rest = await throughputPhase([raw, coldS, warmS, memoryS], CLUSTER_REST_ROUNDS, DURATION_MS)
    const coldState = await cold.call('gateway')
    const warmState = await warm.call('gateway')
    await load.call('closeHeld')
    await Promise.all([stop(cold), stop(warm), stop(memory)])
    const rRaw = rest.get(raw)!
    const rCold = rest.get(coldS)!
    const rWarm = rest.get(warmS)!
    const rMemory = rest.get(memoryS)!
    for (const r of [rCold, rWarm, rMemory]) if (r.non2xx > 0) throw new Error(`a node answered ${r.non2xx} protected requests with non-2xx`)
    if (rRaw.non2xx > 0) throw new Error(`the raw GET loop found no record ${rRaw.non2xx} times`)

    // ---- 3. handshakes, Redis store against memory store ----
    const [memGw, redisGw] = await Promise.all([gw('gateway-memory', ctx.gatewayEnv(null)), gw('gateway-redis', redisEnv())])
    log(`cluster 3/3 verified handshakes/s, ${HANDSHAKE_CONCURRENCY} in flight, memory store and Redis store alternating`)
    const hs = await handshakePhase(load, memGw, redisGw, HANDSHAKE_CONCURRENCY, DURATION_MS, HANDSHAKE_ROUNDS)
    await Promise.all([stop(memGw), stop(redisGw), stop(load)])

    // ---- report ----
    const p99 = rev.firstDeniedMs.p99
    const hsRatio = ratio(hs.subject.perSecond, hs.baseline.perSecond)
    const hsPairs = pairs(hs.subject.rounds, hs.baseline.rounds)
    const coldPairs = pairs(rCold.rounds, rRaw.rounds)
    const warmPairs = pairs(rWarm.rounds, rRaw.rounds)
    const coldMemoryPairs = pairs(rCold.rounds, rMemory.rounds)
    const coldMemoryRatio = ratio(rCold.perSecond, rMemory.perSecond)
    const verdicts = {
      coldVsMemoryRatio: atLeast(coldMemoryRatio, CLUSTER_TARGETS.coldVsMemoryRatio),
      revocationP99Ms: atMost(p99, CLUSTER_TARGETS.revocationP99Ms),
      redisHandshakeRatio: atLeast(hsRatio, TARGETS.handshakeRatio),
    }
    const cpu = (r: { cpuUsPerOp: Record<string, number> }, role: string) => fmt(r.cpuUsPerOp[role] ?? NaN)
    const rows: string[][] = [
      ['Measurement', 'WSDS', 'Baseline', 'Ratio', 'Target', 'Verdict'],
      [`Revocation, close on A to first 401 on B, p50 / p99, ms (${fmt(rev.closes)} closes)`, `${fmt(rev.firstDeniedMs.p50, 2)} / ${fmt(p99, 2)}`, '', '', `p99 <= ${CLUSTER_TARGETS.revocationP99Ms} ms`, verdict(verdicts.revocationP99Ms.pass)],
      ['  lower bound (last poll sent before the 401), p50 / p99, ms', `${fmt(rev.lastSentMs.p50, 2)} / ${fmt(rev.lastSentMs.p99, 2)}`, '', '', '', ''],
      ['  max, ms; polls per close p50; poll round trip p50, ms', `${fmt(rev.firstDeniedMs.max, 2)}; ${fmt(rev.pollsPerClose.p50)}; ${fmt(rev.pollRttMs.p50, 2)}`, '', '', '', ''],
      [`Protected req/s, cold cache (TTL 0, a Redis GET each) vs raw GET loop (${REST_CONNECTIONS} in flight)`, fmt(rCold.perSecond), fmt(rRaw.perSecond), x(rCold.perSecond, rRaw.perSecond), '(info)', ''],
      ['  adjacent-round ratios: median (min-max)', '', '', spread(coldPairs), '', ''],
      [`Protected req/s, warm cache (default TTL) vs raw GET loop`, fmt(rWarm.perSecond), fmt(rRaw.perSecond), x(rWarm.perSecond, rRaw.perSecond), '(info)', ''],
      ['  adjacent-round ratios: median (min-max)', '', '', spread(warmPairs), '', ''],
      ['  cold vs warm node (context)', fmt(rCold.perSecond), fmt(rWarm.perSecond), x(rCold.perSecond, rWarm.perSecond), '', ''],
      ['Protected req/s, Redis store with cache off vs memory store with cache', fmt(rCold.perSecond), fmt(rMemory.perSecond), x(rCold.perSecond, rMemory.perSecond), `>= ${fmt(CLUSTER_TARGETS.coldVsMemoryRatio, 2)}x`, verdict(verdicts.coldVsMemoryRatio.pass)],
      ['  adjacent-round ratios: median (min-max)', '', '', spread(coldMemoryPairs), '', ''],
      ['  node CPU per request, us, Redis cache off / memory store', cpu(rCold, 'gateway'), cpu(rMemory, 'gateway'), x(rCold.cpuUsPerOp.gateway ?? NaN, rMemory.cpuUsPerOp.gateway ?? NaN), '', ''],
      ['  requests per node CPU-second, Redis cache off / memory store', '', '', x(rMemory.cpuUsPerOp.gateway ?? NaN, rCold.cpuUsPerOp.gateway ?? NaN), '(info)', ''],
      ['  request latency p99, ms, cold / warm / raw GET', `${fmt(rCold.latencyMs.p99, 1)} / ${fmt(rWarm.latencyMs.p99, 1)}`, fmt(rRaw.latencyMs.p99, 2), '', '', ''],
      ['  node CPU per request, us, cold / warm', `${cpu(rCold, 'gateway')} / ${cpu(rWarm, 'gateway')}`, '', '', '', ''],
      ['  redis-server CPU per op, us, cold / warm / raw GET', `${cpu(rCold, 'redis')} / ${cpu(rWarm, 'redis')}`, cpu(rRaw, 'redis'), '', '', ''],
      ['  load generator CPU per op, us, cold / warm / raw GET', `${cpu(rCold, 'load')} / ${cpu(rWarm, 'load')}`, cpu(rRaw, 'load'), '', '', ''],
      [`Verified handshakes/s, Redis store vs memory store (${HANDSHAKE_CONCURRENCY} in flight)`, fmt(hs.subject.perSecond), fmt(hs.baseline.perSecond), x(hs.subject.perSecond, hs.baseline.perSecond), `>= ${fmt(TARGETS.handshakeRatio, 2)}x`, verdict(verdicts.redisHandshakeRatio.pass)],
      ['  adjacent-round ratios: median (min-max)', '', '', spread(hsPairs), '', ''],
      ['  server CPU per handshake, us', fmt(hs.subject.serverCpuUsPerOp), fmt(hs.baseline.serverCpuUsPerOp), x(hs.subject.serverCpuUsPerOp, hs.baseline.serverCpuUsPerOp), '', ''],
      ['  handshake latency p50 / p99, ms', `${fmt(hs.subject.verifiedMs.p50, 2)} / ${fmt(hs.subject.verifiedMs.p99, 2)}`, `${fmt(hs.baseline.verifiedMs.p50, 2)} / ${fmt(hs.baseline.verifiedMs.p99, 2)}`, '', '', ''],
    ]
    const errors = rev.errors + rev.timeouts + rCold.errors + rWarm.errors + rMemory.errors + rRaw.errors + hs.subject.errors + hs.baseline.errors
    return {
      rows,
      notes: [
        `Revocation: ${fmt(rev.closes)} closes in ${fmt(rev.seconds, 1)} s, ${rev.timeouts} gave up after ${REVOCATION_GIVE_UP_MS} ms; node B cache hits ${stateB.auth.cacheHits}, misses ${stateB.auth.cacheMisses}, revocations ${stateB.auth.revocations}.`,
        'Method: after ws.close() on A, one keep-alive connection to B sends the next GET as soon as the previous answer is read; the figure is the time to the end of the first 401.',
        `Request baseline: the load generator's own ioredis connection with ${REST_CONNECTIONS} GETs of the same record in flight (no HTTP). Cold node cache hits ${coldState.auth.cacheHits}, misses ${coldState.auth.cacheMisses}; warm node hits ${warmState.auth.cacheHits}, misses ${warmState.auth.cacheMisses}.`,
      ],
      noisy: busyWindows({ 'requests (raw GET)': rRaw, 'requests (cold)': rCold, 'requests (warm)': rWarm, 'requests (memory)': rMemory, 'handshakes (redis)': hs.subject, 'handshakes (memory)': hs.baseline }),
      errors,
      json: {
        settings: { revocations: REVOCATIONS, revocationBatch: REVOCATION_BATCH, restRoundsEach: CLUSTER_REST_ROUNDS, restMsPerSide: DURATION_MS, connections: REST_CONNECTIONS, handshakeConcurrency: HANDSHAKE_CONCURRENCY, handshakeRoundsEach: HANDSHAKE_ROUNDS },
        verdicts,
        revocation: { ...rev, nodeB: stateB.auth },
        requests: { rawGet: rRaw, cold: rCold, warm: rWarm, memory: rMemory, coldVsMemoryRatio: coldMemoryRatio, coldVsMemoryAdjacentRoundRatios: coldMemoryPairs, coldRatio: ratio(rCold.perSecond, rRaw.perSecond), warmRatio: ratio(rWarm.perSecond, rRaw.perSecond), coldAdjacentRoundRatios: coldPairs, warmAdjacentRoundRatios: warmPairs, coldNode: coldState.auth, warmNode: warmState.auth },
        handshakes: { redis: hs.subject, memory: hs.baseline, ratio: hsRatio, adjacentRoundRatios: hsPairs },
      },
    }
  } finally {
    await stopClusterServices()
  }
}
