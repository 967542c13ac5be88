/**
 * `npm run bench`: WSDS against baselines measured in the same run.
 *
 * Every server under test and the load generator run in their own processes (bench/servers,
 * bench/load), started from here with an IPC channel; this process only coordinates, reads
 * /proc, prints the table and writes bench/results/latest.json. Each phase is bounded by a
 * fixed duration or count, and a watchdog ends the whole run if anything hangs.
 *
 * Knobs (env, for quick local runs; the documented figures use the defaults):
 *   BENCH_DURATION_MS (5000), BENCH_WARMUP_MS (1000), BENCH_IDLE (10000),
 *   BENCH_PROFILE=<process>[,<process>...] (gateway, bare-ws, plain-proxy, upstream, load:
 *   writes .cpuprofile files to bench/results/profiles/<process>/; read them with
 *   `tsx bench/profile-summary.ts <file>`)
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { ROOT, fdLimits, rssKiB, startChild, type Child } from './lib/ipc.ts'
import { cpuDelta, sampleCpu, summarize, type CpuDelta, type Summary } from './lib/stats.ts'

const ORIGIN = 'http://bench.wsds.test'
const HOSTNAME = new URL(ORIGIN).hostname
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000)
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000)
const RAMP_MS = Math.min(WARMUP_MS, 250)
const CPUS = cpus().length
const LATENCY_MS = Math.max(1000, Math.round((DURATION_MS * 3) / 5))
/** Rounds per side in the alternating phases (see `alternating`). */
const HANDSHAKE_ROUNDS = 4
const REST_ROUNDS = 8
/** Measured time per side for protected requests: twice the others, as it is the noisiest. */
const REST_MS = DURATION_MS * 2
const HANDSHAKE_CONCURRENCY = 32
const LATENCY_CONCURRENCY = 8
const REST_CONNECTIONS = 32
const IDLE_SOCKETS = Number(process.env.BENCH_IDLE ?? 10_000)
const IDLE_IN_FLIGHT = 200
const SETTLE_MS = 1000
const WATCHDOG_MS = 5 * 60_000
/** BENCH_PROFILE=gateway,bare-ws,plain-proxy,upstream,load (any of): run those with --cpu-prof. */
const PROFILE = new Set((process.env.BENCH_PROFILE ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''))

/** Share of the machine used by other processes above which a run is flagged as noisy. */
const NOISY_SHARE = 0.1

const TARGETS = { handshakeRatio: 0.8, handshakeP99Ms: 10, restRatio: 0.9 }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const children = new Set<Child>()
const log = (text: string) => process.stderr.write(`[bench] ${text}\n`)

// ---- process plumbing ----------------------------------------------------------------------

async function start(name: string, script: string, options: Parameters<typeof startChild>[2] = {}): Promise<Child> {
  const child = await startChild(name, script, options)
  children.add(child)
  return child
}

async function stop(child: Child): Promise<void> {
  children.delete(child)
  await child.stop()
}

function killAll(): void {
  for (const child of children) child.proc.kill('SIGKILL')
}

/**
 * Runs `work` and samples CPU (of `pids` and of the whole machine) from `fromMs` after the
 * start for `durationMs`: the window the load generator measures in.
 */
async function measured<T>(pids: number[], fromMs: number, durationMs: number, work: () => Promise<T>): Promise<{ result: T; cpu: CpuDelta }> {
  const cpu = new Promise<CpuDelta>((resolve) => {
    setTimeout(() => {
      const a = sampleCpu([...pids, process.pid])
      setTimeout(() => resolve(cpuDelta(a, sampleCpu([...pids, process.pid]))), durationMs)
    }, fromMs)
  })
  const result = await work()
  return { result, cpu: await cpu }
}

/**
 * Baseline and subject alternate in short rounds, B S S B B S S B ..., so that drift in the
 * machine (the cores are shared, and round-to-round throughput on this VM varies by up to
 * 20% with the same CPU use) hits both sides alike and averages out. Each phase first warms
 * both sides and the load generator (unmeasured), so every round only needs a short ramp-up.
 */
function alternating<T extends Child>(baseline: T, subject: T, roundsEach: number): T[] {
  const out: T[] = []
  for (let i = 0; i < roundsEach; i++) out.push(...(i % 2 === 0 ? [baseline, subject] : [subject, baseline]))
  return out
}

// ---- phases --------------------------------------------------------------------------------

interface HandshakeRun {
  completed: number
  errors: number
  firstError: string | null
  seconds: number
  perSecond: number
  verifiedMs: Summary
  cycleMs: Summary
  serverCpuUsPerOp: number
  loadCpuUsPerOp: number
  /** Share of the machine's CPU used by processes other than the bench's, in the windows. */
  othersShare: number
  /** handshakes/s of each round, in the order run. */
  rounds: number[]
}

async function handshakePhase(load: Child, baseline: Child, subject: Child, concurrency: number, totalMs: number, roundsEach: number) {
  const acc = new Map<Child, { completed: number; errors: number; firstError: string | null; seconds: number; verified: number[]; cycle: number[]; serverCpuMs: number; loadCpuMs: number; othersMs: number; wallMs: number; rounds: number[] }>()
  // Warm-up, not measured: JIT and heap sizing of the servers and of the load generator
  // (whose first second is measurably slower, which would penalize whichever side goes first).
  for (const child of [baseline, subject]) {
    await load.call('handshakes', { wsUrl: child.info.wsUrl, concurrency, warmupMs: WARMUP_MS, durationMs: 1 })
  }
  for (const child of alternating(baseline, subject, roundsEach)) {
    const warmupMs = RAMP_MS
    const durationMs = totalMs / roundsEach
    const { result: r, cpu } = await measured([child.pid, load.pid], warmupMs, durationMs, () =>
      load.call('handshakes', { wsUrl: child.info.wsUrl, concurrency, warmupMs, durationMs }),
    )
    if (r.errors > 0) log(`${child.name}: ${r.errors} handshake errors, first: ${r.firstError}`)
    const a = acc.get(child) ?? { completed: 0, errors: 0, firstError: null, seconds: 0, verified: [], cycle: [], serverCpuMs: 0, loadCpuMs: 0, othersMs: 0, wallMs: 0, rounds: [] }
    a.completed += r.completed
    a.rounds.push(Math.round(r.completed / r.seconds))
    a.errors += r.errors
    a.firstError ??= r.firstError
    a.seconds += r.seconds
    for (const v of r.verifiedMs as number[]) a.verified.push(v)
    for (const v of r.cycleMs as number[]) a.cycle.push(v)
    a.serverCpuMs += cpu.byPid[child.pid]!
    a.loadCpuMs += cpu.byPid[load.pid]!
    a.othersMs += cpu.othersMs
    a.wallMs += cpu.wallMs
    acc.set(child, a)
  }
  const out = (child: Child): HandshakeRun => {
    const a = acc.get(child)!
    if (a.completed === 0) throw new Error(`${child.name}: no handshake completed (${a.firstError})`)
    return {
      completed: a.completed,
      errors: a.errors,
      firstError: a.firstError,
      seconds: a.seconds,
      perSecond: a.completed / a.seconds,
      verifiedMs: summarize(a.verified),
      cycleMs: summarize(a.cycle),
      serverCpuUsPerOp: (a.serverCpuMs * 1000) / a.completed,
      loadCpuUsPerOp: (a.loadCpuMs * 1000) / a.completed,
      othersShare: a.othersMs / (a.wallMs * CPUS),
      rounds: a.rounds,
    }
  }
  return { baseline: out(baseline), subject: out(subject) }
}

interface RestRun {
  total: number
  seconds: number
  perSecond: number
  non2xx: number
  errors: number
  latencyMs: { mean: number; p50: number; p90: number; p99: number; max: number }
  serverCpuUsPerOp: number
  upstreamCpuUsPerOp: number
  loadCpuUsPerOp: number
  othersShare: number
  /** req/s of each round, in the order run. */
  rounds: number[]
}

async function restPhase(load: Child, upstream: Child, rounds: Child[], totalMs: number, urlOf: (c: Child) => string, headers: Record<string, string>) {
  const acc = new Map<Child, { runs: any[]; serverCpuMs: number; upstreamCpuMs: number; loadCpuMs: number; othersMs: number; wallMs: number }>()
  for (const child of new Set(rounds)) {
    await load.call('autocannon', { url: urlOf(child), headers, connections: REST_CONNECTIONS, warmupMs: 0, durationMs: WARMUP_MS })
  }
  for (const child of rounds) {
    const warmupMs = RAMP_MS
    const durationMs = totalMs / rounds.filter((r) => r === child).length
    const pids = child === upstream ? [child.pid, load.pid] : [child.pid, upstream.pid, load.pid]
    const { result: r, cpu } = await measured(pids, warmupMs, durationMs, () =>
      load.call('autocannon', { url: urlOf(child), headers, connections: REST_CONNECTIONS, warmupMs, durationMs }),
    )
    if (r.non2xx > 0 || r.errors > 0) log(`${child.name}: ${r.non2xx} non-2xx and ${r.errors} errors of ${r.total}`)
    const a = acc.get(child) ?? { runs: [], serverCpuMs: 0, upstreamCpuMs: 0, loadCpuMs: 0, othersMs: 0, wallMs: 0 }
    a.runs.push(r)
    a.serverCpuMs += cpu.byPid[child.pid]!
    a.upstreamCpuMs += child === upstream ? 0 : cpu.byPid[upstream.pid]!
    a.loadCpuMs += cpu.byPid[load.pid]!
    a.othersMs += cpu.othersMs
    a.wallMs += cpu.wallMs
    acc.set(child, a)
  }
  const out = (child: Child): RestRun => {
    const a = acc.get(child)!
    const rounds = a.runs.map((r) => Math.round(r.perSecond))
    const total = a.runs.reduce((n, r) => n + r.total, 0)
    const seconds = a.runs.reduce((n, r) => n + r.seconds, 0)
    // autocannon gives percentiles per run (1 ms resolution); report the median over rounds.
    const mid = (k: 'mean' | 'p50' | 'p90' | 'p99' | 'max') => summarize(a.runs.map((r) => r.latencyMs[k])).p50
    return {
      total,
      seconds,
      perSecond: total / seconds,
      non2xx: a.runs.reduce((n, r) => n + r.non2xx, 0),
      errors: a.runs.reduce((n, r) => n + r.errors, 0),
      latencyMs: { mean: mid('mean'), p50: mid('p50'), p90: mid('p90'), p99: mid('p99'), max: mid('max') },
      serverCpuUsPerOp: (a.serverCpuMs * 1000) / Math.max(1, total),
      upstreamCpuUsPerOp: (a.upstreamCpuMs * 1000) / Math.max(1, total),
      loadCpuUsPerOp: (a.loadCpuMs * 1000) / Math.max(1, total),
      othersShare: a.othersMs / (a.wallMs * CPUS),
      rounds,
    }
  }
  return out
}

interface MemoryRun {
  sockets: number
  errors: number
  openSeconds: number
  rssBeforeKiB: number
  rssAfterKiB: number
  heapBeforeBytes: number
  heapAfterBytes: number
  kibPerConnection: number
  heapBytesPerConnection: number
  gc: boolean
  serverHolds: number
}

async function memoryRun(load: Child, server: Child): Promise<MemoryRun> {
  // Warm the same path first (JIT, lazily created structures), then let it go.
  await load.call('openIdle', { wsUrl: server.info.wsUrl, count: 500, inFlight: IDLE_IN_FLIGHT })
  await load.call('closeHeld')
  await sleep(300)
  const before = await server.call('gc')
  await sleep(SETTLE_MS)
  const rssBeforeKiB = rssKiB(server.pid)
  const opened = await load.call('openIdle', { wsUrl: server.info.wsUrl, count: IDLE_SOCKETS, inFlight: IDLE_IN_FLIGHT })
  if (opened.errors > 0) log(`${server.name}: ${opened.errors} idle sockets failed, first: ${opened.firstError}`)
  const after = await server.call('gc')
  await sleep(SETTLE_MS)
  const rssAfterKiB = rssKiB(server.pid)
  const state = await server.call('gateway')
  await load.call('closeHeld')
  return {
    sockets: opened.opened,
    errors: opened.errors,
    openSeconds: opened.seconds,
    rssBeforeKiB,
    rssAfterKiB,
    heapBeforeBytes: before.heapUsed,
    heapAfterBytes: after.heapUsed,
    kibPerConnection: (rssAfterKiB - rssBeforeKiB) / Math.max(1, opened.opened),
    heapBytesPerConnection: (after.heapUsed - before.heapUsed) / Math.max(1, opened.opened),
    gc: before.gc,
    serverHolds: state.verified ?? state.open,
  }
}

// ---- report --------------------------------------------------------------------------------

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a'
const ratio = (a: number, b: number) => a / b
const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS')
/** Ratios of adjacent rounds (subject k-th round / baseline k-th round), for the spread. */
function pairs(subject: number[], baseline: number[]) {
  const r = subject.map((v, i) => v / baseline[i]!).sort((a, b) => a - b)
  const mid = r.length / 2
  const median = r.length % 2 === 1 ? r[Math.floor(mid)]! : (r[mid - 1]! + r[mid]!) / 2
  return { median, min: r[0]!, max: r[r.length - 1]!, all: r }
}
const pct = (share: number) => `${fmt(share * 100)}%`

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  const line = (r: string[]) => '| ' + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ') + ' |'
  const rule = '|' + widths.map((w, c) => (c === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|'
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n')
}

/** Commit and whether the working tree differs from it (the bench measures the working tree). */
function gitState(): { commit: string | null; dirtyFiles: number | null } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'package.json'], { cwd: ROOT, encoding: 'utf8' })
    return { commit, dirtyFiles: dirty.split('\n').filter((l) => l.trim() !== '').length }
  } catch {
    return { commit: null, dirtyFiles: null }
  }
}

// ---- main ----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const startedAt = new Date()
  const t0 = performance.now()
  const tmp = mkdtempSync(join(tmpdir(), 'wsds-bench-'))
  const keysFile = join(tmp, 'keyset.json')
  const keySet = generateKeySet(createRandomPool(), { id: 'bench' })
  writeFileSync(keysFile, JSON.stringify({ id: keySet.id, keys: keySet.keys }))

  const fds = fdLimits()
  const needFds = IDLE_SOCKETS + 1024
  if (fds.hard < needFds) {
    log(`open-file hard limit is ${fds.hard}; ${IDLE_SOCKETS} idle sockets need about ${needFds} per process. Raise it (ulimit -Hn) or set BENCH_IDLE lower.`)
  }
  // Who else is using the shared cores before we start?
  const quiet0 = sampleCpu([process.pid])
  await sleep(1000)
  const quiet = cpuDelta(quiet0, sampleCpu([process.pid]))
  const backgroundBefore = quiet.othersMs / (quiet.wallMs * CPUS)
  log(`node ${process.version}, ${CPUS} CPUs, ulimit -n ${fds.soft} (hard ${fds.hard}); duration ${DURATION_MS} ms, warm-up ${WARMUP_MS} ms; other processes busy ${pct(backgroundBefore)} of the machine`)
  if (backgroundBefore > NOISY_SHARE) log('warning: the machine is not idle; figures will be noisier than usual')

  const gatewayEnv = (upstream: string | null): Record<string, string> => ({
    PORT: '0',
    HOST: '127.0.0.1',
    WSDS_ALLOWED_ORIGINS: ORIGIN,
    WSDS_KEYS_FILE: keysFile,
    WSDS_RATE_LIMIT: 'off',
    WSDS_DEMO: 'off',
    WSDS_LOG_LEVEL: 'silent',
    ...(upstream === null ? {} : { WSDS_UPSTREAM: upstream }),
  })
  const benchEnv = { BENCH_KEYS_FILE: keysFile, BENCH_ORIGIN: ORIGIN, BENCH_HOSTNAME: HOSTNAME }
  const profileArgv = (name: string) => (PROFILE.has(name) ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench', 'results', 'profiles', name)}`] : [])

  try {
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
    const restRatio = ratio(restGw.perSecond, restPlain.perSecond)
    const p99 = latGw.verifiedMs.p99
    const hsPairs = pairs(hsGw.rounds, hsBare.rounds)
    const restPairs = pairs(restGw.rounds, restPlain.rounds)
    const verdicts = {
      handshakeRatio: { value: hsRatio, target: `>= ${TARGETS.handshakeRatio}x`, pass: hsRatio >= TARGETS.handshakeRatio },
      handshakeP99Ms: { value: p99, target: `<= ${TARGETS.handshakeP99Ms} ms`, pass: p99 <= TARGETS.handshakeP99Ms },
      restRatio: { value: restRatio, target: `>= ${TARGETS.restRatio}x`, pass: restRatio >= TARGETS.restRatio },
    }
    const x = (a: number, b: number) => fmt(ratio(a, b), 2) + 'x'
    const rows: string[][] = [
      ['Measurement', 'WSDS', 'Baseline', 'Ratio', 'Target', 'Verdict'],
      [`Verified handshakes/s (${HANDSHAKE_CONCURRENCY} in flight, ${DURATION_MS / 1000} s each)`, fmt(hsGw.perSecond), fmt(hsBare.perSecond), x(hsGw.perSecond, hsBare.perSecond), `>= ${fmt(TARGETS.handshakeRatio, 2)}x`, verdict(verdicts.handshakeRatio.pass)],
      ['  adjacent-round ratios: median (min-max)', '', '', `${fmt(hsPairs.median, 2)}x (${fmt(hsPairs.min, 2)}-${fmt(hsPairs.max, 2)})`, '', ''],
      ['  server CPU per handshake, us', fmt(hsGw.serverCpuUsPerOp), fmt(hsBare.serverCpuUsPerOp), x(hsGw.serverCpuUsPerOp, hsBare.serverCpuUsPerOp), '', ''],
      ['  server capacity, handshakes per CPU-second', fmt(1e6 / hsGw.serverCpuUsPerOp), fmt(1e6 / hsBare.serverCpuUsPerOp), x(hsBare.serverCpuUsPerOp, hsGw.serverCpuUsPerOp), '(info)', ''],
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
    const seconds = (performance.now() - t0) / 1000
    const report = table(rows)
    const others = [hsGw, hsBare, latGw, latBare, lat1.subject, lat1.baseline, restGw, restPlain, restUp].map((r) => r.othersShare)
    const errors = hsGw.errors + hsBare.errors + latGw.errors + latBare.errors + lat1.subject.errors + lat1.baseline.errors + restGw.errors + restPlain.errors + restUp.errors + memGw.errors + memBare.errors
    const out = process.stdout
    out.write(`\nWSDS bench, ${startedAt.toISOString()}, node ${process.version}, ${CPUS} CPUs shared by the servers and the load generator, ${fmt(seconds)} s\n`)
    out.write('Baselines: bare ws server exchanging the same frames (handshakes, latency, memory); plain node:http + createReverseProxy, no auth (requests).\n\n')
    out.write(report + '\n\n')
    out.write(`errors: ${errors}; auth cache hits ${gwState.auth.cacheHits}, misses ${gwState.auth.cacheMisses}; idle sockets held: gateway ${memGw.serverHolds}, bare ${memBare.serverHolds}\n`)
    out.write(`other processes on the machine: ${pct(backgroundBefore)} before the run, ${pct(Math.min(...others))}-${pct(Math.max(...others))} during the measured windows\n`)
    const busy = Object.entries({ 'handshakes/s (gateway)': hsGw, 'handshakes/s (baseline)': hsBare, 'latency (gateway)': latGw, 'latency (baseline)': latBare, 'unloaded latency (gateway)': lat1.subject, 'unloaded latency (baseline)': lat1.baseline, 'requests (gateway)': restGw, 'requests (plain proxy)': restPlain, 'requests (upstream)': restUp })
      .filter(([, r]) => r.othersShare > NOISY_SHARE)
      .map(([name, r]) => `${name} ${pct(r.othersShare)}`)
    if (busy.length > 0) out.write(`warning: other processes used over ${pct(NOISY_SHARE)} of the machine during: ${busy.join(', ')}; treat this run's figures as noisy\n`)

    const results = {
      startedAt: startedAt.toISOString(),
      seconds,
      code: gitState(),
      machine: { node: process.version, cpus: CPUS, cpuModel: cpus()[0]?.model ?? null, fdLimit: fds, note: 'servers and load generator share the CPUs', othersShareBefore: backgroundBefore },
      settings: {
        origin: ORIGIN,
        durationMs: DURATION_MS,
        warmupMs: WARMUP_MS,
        rampMs: RAMP_MS,
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
      handshakes: { gateway: hsGw, baseline: hsBare, ratio: hsRatio, adjacentRoundRatios: hsPairs, serverCapacityRatio: ratio(hsBare.serverCpuUsPerOp, hsGw.serverCpuUsPerOp) },
      latency: { gateway: latGw, baseline: latBare, p50Ratio: ratio(latGw.verifiedMs.p50, latBare.verifiedMs.p50), p99Ratio: ratio(latGw.verifiedMs.p99, latBare.verifiedMs.p99) },
      latencyUnloaded: { concurrency: 1, gateway: lat1.subject, baseline: lat1.baseline },
      rest: { gateway: restGw, plainProxy: restPlain, upstream: restUp, ratio: restRatio, adjacentRoundRatios: restPairs, serverCpuRatio: ratio(restGw.serverCpuUsPerOp, restPlain.serverCpuUsPerOp), ratioVsUpstream: ratio(restGw.perSecond, restUp.perSecond) },
      memory: { gateway: memGw, baseline: memBare, ratio: ratio(memGw.kibPerConnection, memBare.kibPerConnection) },
      errors,
      noisy: busy,
      table: report,
    }
    const dir = join(ROOT, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'latest.json'), JSON.stringify(results, null, 2) + '\n')
    out.write('results: bench/results/latest.json\n')
  } finally {
    await Promise.all([...children].map((c) => stop(c).catch(() => c.proc.kill('SIGKILL'))))
    rmSync(tmp, { recursive: true, force: true })
  }
}

const watchdog = setTimeout(() => {
  log(`still running after ${WATCHDOG_MS / 1000} s: stopping`)
  killAll()
  process.exit(1)
}, WATCHDOG_MS)
watchdog.unref()
process.on('SIGINT', () => {
  killAll()
  process.exit(130)
})

main().then(
  () => clearTimeout(watchdog),
  (err: unknown) => {
    log(`failed: ${err instanceof Error ? err.stack : String(err)}`)
    killAll()
    process.exitCode = 1
  },
)
