/**
 * The first section of `npm run bench` (`--only=core`): verified handshakes/s, handshake
 * latency, protected requests/s through the gateway's own proxy and memory per idle socket,
 * each against a baseline in the same run.
 */
import type { SectionContext } from './context.ts'
import {
  HANDSHAKE_CONCURRENCY,
  HANDSHAKE_ROUNDS,
  IDLE_IN_FLIGHT,
  IDLE_SOCKETS,
  LATENCY_CONCURRENCY,
  LATENCY_MS,
  DURATION_MS,
  REST_CONNECTIONS,
  REST_MS,
  REST_ROUNDS,
  TARGETS,
  alternating,
  busyWindows,
  fmt,
  handshakePhase,
  log,
  memoryRun,
  pairs,
  pct,
  ratio,
  restPhase,
  spread,
  start,
  stop,
  verdict,
  x,
  type SectionResult,
} from '../lib/common.ts'

export async function coreSection(ctx: SectionContext): Promise<SectionResult> {
  const { gatewayEnv, benchEnv, profileArgv, needFds } = ctx
  const [upstream, load] = await Promise.all([
    start('upstream', 'servers/upstream.ts', { execArgv: profileArgv('upstream') }),
    start('load', 'load/main.ts', { env: benchEnv, minFds: needFds, execArgv: profileArgv('load') }),
  ])
  const [gateway, bare, plain] = await Promise.all([
    start('gateway', 'servers/gateway.ts', { env: gatewayEnv(upstream.info.url), execArgv: profileArgv('gateway') }),
    start('bare-ws', 'servers/bare-ws.ts', { env: benchEnv, execArgv: profileArgv('bare-ws') }),
    start('plain-proxy', 'servers/plain-proxy.ts', { env: { BENCH_UPSTREAM: upstream.info.url }, execArgv: profileArgv('plain-proxy') }),
  ])

  log(`1/4 verified handshakes/s, ${HANDSHAKE_CONCURRENCY} in flight, bare ws and gateway alternating`)
  const hs = await handshakePhase(load, bare, gateway, HANDSHAKE_CONCURRENCY, DURATION_MS, HANDSHAKE_ROUNDS)
  log(`2/4 handshake latency, ${LATENCY_CONCURRENCY} in flight, bare ws and gateway alternating`)
  const lat = await handshakePhase(load, bare, gateway, LATENCY_CONCURRENCY, LATENCY_MS, HANDSHAKE_ROUNDS)
  log('2/4 handshake latency, 1 in flight (unloaded, for context)')
  const lat1 = await handshakePhase(load, bare, gateway, 1, LATENCY_MS, HANDSHAKE_ROUNDS)

  log('3/4 protected requests/s: verifying one connection, then bare upstream, plain proxy and gateway')
  const { connectionId } = await load.call('verifyHold', { wsUrl: gateway.info.wsUrl })
  const headers = { connectionId }
  const upOut = await restPhase(load, upstream, [upstream], DURATION_MS, (c) => `${c.info.url}/greeting?who=bench`, {})
  const restUp = upOut(upstream)
  const restOut = await restPhase(load, upstream, alternating(plain, gateway, REST_ROUNDS), REST_MS, (c) => `${c.info.url}/api/greeting?who=bench`, headers)
  const restPlain = restOut(plain)
  const restGw = restOut(gateway)
  const gwState = await gateway.call('gateway')
  await load.call('closeHeld')
  if (restGw.non2xx > 0) throw new Error(`gateway answered ${restGw.non2xx} protected requests with non-2xx: the connection was not admitted`)

  // Memory on fresh processes, so the earlier phases' heap growth is not counted.
  await Promise.all([stop(gateway), stop(bare), stop(plain), stop(upstream)])
  log(`4/4 memory, ${IDLE_SOCKETS} idle verified sockets: gateway`)
  const memGwServer = await start('gateway-mem', 'servers/gateway.ts', { env: gatewayEnv(null), execArgv: ['--expose-gc'], minFds: needFds })
  const memGw = await memoryRun(load, memGwServer)
  await stop(memGwServer)
  log(`4/4 memory, ${IDLE_SOCKETS} idle sockets: bare ws`)
  const memBareServer = await start('bare-ws-mem', 'servers/bare-ws.ts', { env: benchEnv, execArgv: ['--expose-gc'], minFds: needFds })
  const memBare = await memoryRun(load, memBareServer)
  await stop(memBareServer)
  await stop(load)

  const hsGw = hs.subject
  const hsBare = hs.baseline
  const latGw = lat.subject
  const latBare = lat.baseline
  const hsRatio = ratio(hsGw.perSecond, hsBare.perSecond)
  // Handshakes per server CPU-second, gateway / bare: the inverse of the CPU per handshake.
  const hsCpuRatio = ratio(hsBare.serverCpuUsPerOp, hsGw.serverCpuUsPerOp)
  const restRatio = ratio(restGw.perSecond, restPlain.perSecond)
  const p99 = latGw.verifiedMs.p99
  const hsPairs = pairs(hsGw.rounds, hsBare.rounds)
  const restPairs = pairs(restGw.rounds, restPlain.rounds)
  const verdicts = {
    handshakeCpuRatio: { value: hsCpuRatio, target: `>= ${TARGETS.handshakeCpuRatio}x`, pass: hsCpuRatio >= TARGETS.handshakeCpuRatio },
    handshakeRatio: { value: hsRatio, target: `>= ${TARGETS.handshakeRatio}x`, pass: hsRatio >= TARGETS.handshakeRatio },
    handshakeP99Ms: { value: p99, target: `<= ${TARGETS.handshakeP99Ms} ms`, pass: p99 <= TARGETS.handshakeP99Ms },
    restRatio: { value: restRatio, target: `>= ${TARGETS.restRatio}x`, pass: restRatio >= TARGETS.restRatio },
  }
  const rows: string[][] = [
    ['Measurement', 'WSDS', 'Baseline', 'Ratio', 'Target', 'Verdict'],
    [`Verified handshakes per server CPU-second (${HANDSHAKE_CONCURRENCY} in flight, ${DURATION_MS / 1000} s each)`, fmt(1e6 / hsGw.serverCpuUsPerOp), fmt(1e6 / hsBare.serverCpuUsPerOp), x(hsBare.serverCpuUsPerOp, hsGw.serverCpuUsPerOp), `>= ${fmt(TARGETS.handshakeCpuRatio, 2)}x`, verdict(verdicts.handshakeCpuRatio.pass)],
    ['  server CPU per handshake, us', fmt(hsGw.serverCpuUsPerOp), fmt(hsBare.serverCpuUsPerOp), x(hsGw.serverCpuUsPerOp, hsBare.serverCpuUsPerOp), '', ''],
    ['  verified handshakes/s, wall clock (context: the load generator sets it)', fmt(hsGw.perSecond), fmt(hsBare.perSecond), x(hsGw.perSecond, hsBare.perSecond), `>= ${fmt(TARGETS.handshakeRatio, 2)}x`, verdict(verdicts.handshakeRatio.pass)],
    ['  adjacent-round ratios (wall clock): median (min-max)', '', '', `${fmt(hsPairs.median, 2)}x (${fmt(hsPairs.min, 2)}-${fmt(hsPairs.max, 2)})`, '', ''],
    ['  load generator CPU per handshake, us', fmt(hsGw.loadCpuUsPerOp), fmt(hsBare.loadCpuUsPerOp), x(hsGw.loadCpuUsPerOp, hsBare.loadCpuUsPerOp), '', ''],
    [`Handshake latency p50, ms (${LATENCY_CONCURRENCY} in flight)`, fmt(latGw.verifiedMs.p50, 2), fmt(latBare.verifiedMs.p50, 2), x(latGw.verifiedMs.p50, latBare.verifiedMs.p50), '', ''],
    [`Handshake latency p99, ms (${LATENCY_CONCURRENCY} in flight)`, fmt(latGw.verifiedMs.p99, 2), fmt(latBare.verifiedMs.p99, 2), x(latGw.verifiedMs.p99, latBare.verifiedMs.p99), `<= ${TARGETS.handshakeP99Ms} ms`, verdict(verdicts.handshakeP99Ms.pass)],
    ['  latency p50 / p99, ms (1 in flight, context)', `${fmt(lat1.subject.verifiedMs.p50, 2)} / ${fmt(lat1.subject.verifiedMs.p99, 2)}`, `${fmt(lat1.baseline.verifiedMs.p50, 2)} / ${fmt(lat1.baseline.verifiedMs.p99, 2)}`, `${x(lat1.subject.verifiedMs.p50, lat1.baseline.verifiedMs.p50)} / ${x(lat1.subject.verifiedMs.p99, lat1.baseline.verifiedMs.p99)}`, '', ''],
    [`Protected req/s (${REST_CONNECTIONS} conns, ${REST_MS / 1000} s each) vs plain proxy`, fmt(restGw.perSecond), fmt(restPlain.perSecond), x(restGw.perSecond, restPlain.perSecond), `>= ${fmt(TARGETS.restRatio, 2)}x`, verdict(verdicts.restRatio.pass)],
    ['  adjacent-round ratios: median (min-max)', '', '', `${fmt(restPairs.median, 2)}x (${fmt(restPairs.min, 2)}-${fmt(restPairs.max, 2)})`, '', ''],
    ['  vs bare upstream (context)', fmt(restGw.perSecond), fmt(restUp.perSecond), x(restGw.perSecond, restUp.perSecond), '', ''],
    ['  plain proxy vs bare upstream (context)', fmt(restPlain.perSecond), fmt(restUp.perSecond), x(restPlain.perSecond, restUp.perSecond), '', ''],
    ['  request latency p99, ms', fmt(restGw.latencyMs.p99, 1), fmt(restPlain.latencyMs.p99, 1), x(restGw.latencyMs.p99, restPlain.latencyMs.p99), '', ''],
    ['  server CPU per request, us', fmt(restGw.serverCpuUsPerOp), fmt(restPlain.serverCpuUsPerOp), x(restGw.serverCpuUsPerOp, restPlain.serverCpuUsPerOp), '', ''],
    ['  upstream CPU per request, us', fmt(restGw.upstreamCpuUsPerOp), fmt(restPlain.upstreamCpuUsPerOp), x(restGw.upstreamCpuUsPerOp, restPlain.upstreamCpuUsPerOp), '', ''],
    [`RSS per idle verified socket, KiB (${fmt(IDLE_SOCKETS)} sockets)`, fmt(memGw.kibPerConnection, 1), fmt(memBare.kibPerConnection, 1), x(memGw.kibPerConnection, memBare.kibPerConnection), '', ''],
    ['  V8 heap per idle socket, KiB', fmt(memGw.heapBytesPerConnection / 1024, 1), fmt(memBare.heapBytesPerConnection / 1024, 1), x(memGw.heapBytesPerConnection, memBare.heapBytesPerConnection), '', ''],
  ]
  const errors = hsGw.errors + hsBare.errors + latGw.errors + latBare.errors + lat1.subject.errors + lat1.baseline.errors + restGw.errors + restPlain.errors + restUp.errors + memGw.errors + memBare.errors
  const others = [hsGw, hsBare, latGw, latBare, lat1.subject, lat1.baseline, restGw, restPlain, restUp].map((r) => r.othersShare)
  const noisy = busyWindows({ 'handshakes/s (gateway)': hsGw, 'handshakes/s (baseline)': hsBare, 'latency (gateway)': latGw, 'latency (baseline)': latBare, 'unloaded latency (gateway)': lat1.subject, 'unloaded latency (baseline)': lat1.baseline, 'requests (gateway)': restGw, 'requests (plain proxy)': restPlain, 'requests (upstream)': restUp })
  return {
    rows,
    notes: [
      'Baselines: bare ws server exchanging the same frames (handshakes, latency, memory); plain node:http + createReverseProxy, no auth (requests).',
      `auth cache hits ${gwState.auth.cacheHits}, misses ${gwState.auth.cacheMisses}; idle sockets held: gateway ${memGw.serverHolds}, bare ${memBare.serverHolds}`,
      `other processes during the measured windows: ${pct(Math.min(...others))}-${pct(Math.max(...others))}`,
    ],
    noisy,
    errors,
    json: {
      settings: {
        latencyMs: LATENCY_MS,
        restMs: REST_MS,
        handshakeRoundsEach: HANDSHAKE_ROUNDS,
        restRoundsEach: REST_ROUNDS,
        handshakeConcurrency: HANDSHAKE_CONCURRENCY,
        latencyConcurrency: LATENCY_CONCURRENCY,
        restConnections: REST_CONNECTIONS,
        idleSockets: IDLE_SOCKETS,
        idleInFlight: IDLE_IN_FLIGHT,
      },
      verdicts,
      handshakes: { gateway: hsGw, baseline: hsBare, ratio: hsRatio, adjacentRoundRatios: hsPairs, serverCapacityRatio: hsCpuRatio },
      latency: { gateway: latGw, baseline: latBare, p50Ratio: ratio(latGw.verifiedMs.p50, latBare.verifiedMs.p50), p99Ratio: ratio(latGw.verifiedMs.p99, latBare.verifiedMs.p99) },
      latencyUnloaded: { concurrency: 1, gateway: lat1.subject, baseline: lat1.baseline },
      rest: { gateway: restGw, plainProxy: restPlain, upstream: restUp, ratio: restRatio, adjacentRoundRatios: restPairs, serverCpuRatio: ratio(restGw.serverCpuUsPerOp, restPlain.serverCpuUsPerOp), ratioVsUpstream: ratio(restGw.perSecond, restUp.perSecond) },
      memory: { gateway: memGw, baseline: memBare, ratio: ratio(memGw.kibPerConnection, memBare.kibPerConnection) },
      errors,
    },
  }
}
