/**
 * `npm run soak` (not part of `npm test`): does the gateway give back what it takes?
 *
 * 1. Churn: SOAK_CHURN (200,000) verified handshakes, each closed right after `verified`,
 *    against one gateway on the memory store. RSS before and after (after a GC), and the
 *    records the store still holds (must be 0).
 * 2. Idle: SOAK_IDLE (50,000) verified sockets held open for SOAK_HOLD_MS (60 s), spread
 *    over SOAK_NODES (3) gateway nodes sharing a private redis-server, because one process
 *    may hold at most `ulimit -Hn` descriptors (20,000 on the bench machine). RSS per socket
 *    on each node, then every socket closes: RSS back near the baseline, and zero records
 *    left in any node's memory or in Redis (DBSIZE).
 *
 * Figures go to docs/benchmarks.md ("Soak"); the run prints them and writes
 * bench/results/soak.json. Every phase is bounded by its count and a watchdog.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { connectRedis } from '../src/stores/redis.ts'
import { startRedisServer } from '../test/helpers/redis.ts'
import { findBinary } from '../test/helpers/services.ts'
import { benchGatewayEnv, benchLoadEnv, fmt, killAll, log, sleep, start, stop, table } from './lib/common.ts'
import { ROOT, fdLimits, rssKiB, type Child } from './lib/ipc.ts'

const CHURN = Number(process.env.SOAK_CHURN ?? 200_000)
const CHURN_CONCURRENCY = Number(process.env.SOAK_CHURN_CONCURRENCY ?? 64)
const IDLE = Number(process.env.SOAK_IDLE ?? 50_000)
const NODES = Number(process.env.SOAK_NODES ?? 3)
const HOLD_MS = Number(process.env.SOAK_HOLD_MS ?? 60_000)
const IN_FLIGHT = 200
/** RSS within this much of the baseline counts as "back" (allocator and JIT keep some). */
const BACK_TOLERANCE = 0.25
/** ...or within this many KiB, whatever the socket count (GC and allocator noise). */
const BACK_SLACK_KIB = 8 * 1024
const WATCHDOG_MS = Number(process.env.SOAK_WATCHDOG_MS ?? 30 * 60_000)

const watchdog = setTimeout(() => {
  log(`watchdog: the soak run took over ${WATCHDOG_MS} ms; stopping everything`)
  killAll()
  process.exit(3)
}, WATCHDOG_MS)
watchdog.unref()

const tmp = mkdtempSync(join(tmpdir(), 'wsds-soak-'))
const keysFile = join(tmp, 'keys.json')
writeFileSync(keysFile, JSON.stringify(generateKeySet(createRandomPool(), { id: 'soak' })))
const benchEnv = benchLoadEnv(keysFile)
const gatewayEnv = (extra: Record<string, string> = {}) => benchGatewayEnv(keysFile, extra)
const gcArgv = ['--expose-gc']

async function settledRss(child: Child): Promise<number> {
  await child.call('gc')
  await sleep(1000)
  return rssKiB(child.pid)
}

async function churnPhase() {
  const gw = await start('gateway', 'servers/gateway.ts', { env: gatewayEnv(), execArgv: gcArgv })
  const load = await start('load', 'load/main.ts', { env: benchEnv })
  try {
    // Warm the path (JIT, lazily built structures) before the baseline is taken.
    await load.call('churn', { wsUrl: gw.info.wsUrl, count: 2000, concurrency: CHURN_CONCURRENCY }, 120_000)
    const before = await settledRss(gw)
    log(`churn: ${fmt(CHURN)} handshakes, ${CHURN_CONCURRENCY} in flight`)
    const cpu0 = await gw.call('usage')
    const run = await load.call('churn', { wsUrl: gw.info.wsUrl, count: CHURN, concurrency: CHURN_CONCURRENCY }, WATCHDOG_MS)
    const cpu1 = await gw.call('usage')
    await sleep(500)
    const after = await settledRss(gw)
    const records = await gw.call('records')
    const state = await gw.call('gateway')
    return {
      handshakes: run.completed,
      errors: run.errors,
      firstError: run.firstError,
      seconds: run.seconds,
      perSecond: run.completed / run.seconds,
      serverCpuUsPerHandshake: (cpu1.cpuUserUs + cpu1.cpuSystemUs - cpu0.cpuUserUs - cpu0.cpuSystemUs) / Math.max(1, run.completed),
      rssBeforeKiB: before,
      rssAfterKiB: after,
      rssGrowthKiB: after - before,
      recordsLeft: records,
      openLeft: state.open,
    }
  } finally {
    await stop(load)
    await stop(gw)
  }
}

async function idlePhase() {
  const binary = findBinary('redis-server', ['/usr/bin/redis-server'])
  if (binary === null) throw new Error('redis-server not installed (apt-get install redis-server)')
  const redis = await startRedisServer(binary)
  const perNode = Math.ceil(IDLE / NODES)
  const fds = perNode + 2048
  const nodes: Child[] = []
  const loads: Child[] = []
  try {
    for (let i = 0; i < NODES; i++) {
      nodes.push(await start(`node-${i}`, 'servers/gateway.ts', { env: gatewayEnv({ WSDS_STORE: redis.url }), execArgv: gcArgv, minFds: fds }))
      loads.push(await start(`load-${i}`, 'load/main.ts', { env: benchEnv, minFds: fds }))
    }
    // Warm each node, then take its baseline.
    await Promise.all(nodes.map((n, i) => loads[i]!.call('churn', { wsUrl: n.info.wsUrl, count: 500, concurrency: 32 }, 120_000)))
    const before = await Promise.all(nodes.map(settledRss))
    log(`idle: ${fmt(IDLE)} verified sockets over ${NODES} nodes on Redis, held ${HOLD_MS / 1000} s`)
    const opened = await Promise.all(
      nodes.map((n, i) => loads[i]!.call('openIdle', { wsUrl: n.info.wsUrl, count: Math.min(perNode, IDLE - i * perNode), inFlight: IN_FLIGHT }, WATCHDOG_MS)),
    )
    const redisClient = connectRedis(redis.url)
    if (redisClient.status !== 'ready') await new Promise((resolve) => redisClient.once('ready', resolve))
    const recordsHeld = await redisClient.dbsize()
    await sleep(HOLD_MS)
    const held = await Promise.all(nodes.map(settledRss))
    const verifiedAfterHold = (await Promise.all(nodes.map((n) => n.call('gateway')))).reduce((sum, s) => sum + (s.verified as number), 0)
    await Promise.all(loads.map((l) => l.call('closeHeld', undefined, 120_000)))
    await sleep(2000)
    const after = await Promise.all(nodes.map(settledRss))
    const memoryLeft = (await Promise.all(nodes.map((n) => n.call('gateway')))).reduce((sum, s) => sum + (s.open as number), 0)
    const redisLeft = await redisClient.dbsize()
    redisClient.disconnect()
    const sockets = opened.reduce((sum, o) => sum + (o.opened as number), 0)
    return {
      sockets,
      errors: opened.reduce((sum, o) => sum + (o.errors as number), 0),
      firstError: opened.find((o) => o.firstError)?.firstError ?? null,
      verifiedAfterHold,
      recordsInRedisWhileHeld: recordsHeld,
      nodes: nodes.map((n, i) => ({
        node: n.name,
        sockets: opened[i]!.opened as number,
        rssBeforeKiB: before[i]!,
        rssHeldKiB: held[i]!,
        rssAfterKiB: after[i]!,
        kibPerSocket: (held[i]! - before[i]!) / Math.max(1, opened[i]!.opened as number),
        backToBaseline: after[i]! - before[i]! <= Math.max(BACK_SLACK_KIB, (held[i]! - before[i]!) * BACK_TOLERANCE),
      })),
      openLeftOnNodes: memoryLeft,
      recordsLeftInRedis: redisLeft,
    }
  } finally {
    for (const l of loads) await stop(l)
    for (const n of nodes) await stop(n)
    await redis.stop()
  }
}

try {
  const { hard } = fdLimits()
  log(`node ${process.version}; open-file hard limit ${hard}`)
  if (Math.ceil(IDLE / NODES) + 2048 > hard) {
    throw new Error(`${fmt(IDLE)} sockets over ${NODES} nodes need ${fmt(Math.ceil(IDLE / NODES) + 2048)} descriptors per process; the hard limit is ${hard}: raise SOAK_NODES`)
  }
  const churn = await churnPhase()
  log(
    table([
      ['churn', 'value'],
      ['handshakes (errors)', `${fmt(churn.handshakes)} (${churn.errors})`],
      ['handshakes/s', fmt(churn.perSecond)],
      ['server CPU per handshake', `${fmt(churn.serverCpuUsPerHandshake)} µs`],
      ['RSS before -> after', `${fmt(churn.rssBeforeKiB / 1024, 1)} -> ${fmt(churn.rssAfterKiB / 1024, 1)} MiB`],
      ['records / sockets left', `${churn.recordsLeft} / ${churn.openLeft}`],
    ]),
  )
  const idle = await idlePhase()
  log(
    table([
      ['node', 'sockets', 'RSS before', 'held', 'after close', 'KiB/socket', 'back'],
      ...idle.nodes.map((n) => [
        n.node,
        fmt(n.sockets),
        `${fmt(n.rssBeforeKiB / 1024, 1)} MiB`,
        `${fmt(n.rssHeldKiB / 1024, 1)} MiB`,
        `${fmt(n.rssAfterKiB / 1024, 1)} MiB`,
        fmt(n.kibPerSocket, 1),
        n.backToBaseline ? 'yes' : 'NO',
      ]),
    ]),
  )
  log(`idle: ${fmt(idle.sockets)} sockets (${idle.errors} errors), ${fmt(idle.verifiedAfterHold)} still verified after the hold; records in Redis while held ${fmt(idle.recordsInRedisWhileHeld)}, left after close: Redis ${idle.recordsLeftInRedis}, node memory ${idle.openLeftOnNodes}`)
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
  writeFileSync(join(ROOT, 'bench', 'results', 'soak.json'), JSON.stringify({ at: new Date().toISOString(), node: process.version, churn, idle }, null, 2))
  const ok =
    churn.errors === 0 &&
    churn.recordsLeft === 0 &&
    idle.errors === 0 &&
    idle.recordsLeftInRedis === 0 &&
    idle.openLeftOnNodes === 0 &&
    idle.verifiedAfterHold === idle.sockets &&
    idle.nodes.every((n) => n.backToBaseline)
  log(ok ? 'soak: PASS' : 'soak: FAIL (see above)')
  process.exitCode = ok ? 0 : 1
} catch (err) {
  log(`soak failed: ${err instanceof Error ? err.stack : String(err)}`)
  killAll()
  process.exitCode = 1
} finally {
  clearTimeout(watchdog)
  rmSync(tmp, { recursive: true, force: true })
}
