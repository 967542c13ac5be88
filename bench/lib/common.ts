/**
 * What every section of `npm run bench` shares: settings, child processes, CPU-sampled
 * windows, alternating rounds, the two existing phase kinds (handshakes through the load
 * generator, HTTP requests through autocannon) and the table formatting.
 */
import { execFileSync } from 'node:child_process'
import { cpus } from 'node:os'
import { ROOT, startChild, rssKiB, type Child } from './ipc.ts'
import { cpuDelta, sampleCpu, summarize, type CpuDelta, type Summary } from './stats.ts'
export const ORIGIN = 'http://bench.wsds.test'
export const HOSTNAME = new URL(ORIGIN).hostname
export const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000)
export const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000)
export const RAMP_MS = Math.min(WARMUP_MS, 250)
export const CPUS = cpus().length
export const LATENCY_MS = Math.max(1000, Math.round((DURATION_MS * 3) / 5))
/** Rounds per side in the alternating phases (see `alternating`). */
export const HANDSHAKE_ROUNDS = 4
export const REST_ROUNDS = 10
/** Measured time per side for protected requests: twice the others, as it is the noisiest. */
export const REST_MS = DURATION_MS * 2
export const HANDSHAKE_CONCURRENCY = 32
export const LATENCY_CONCURRENCY = 8
export const REST_CONNECTIONS = 32
export const IDLE_SOCKETS = Number(process.env.BENCH_IDLE ?? 10_000)
export const IDLE_IN_FLIGHT = 200
export const SETTLE_MS = 1000
/** BENCH_PROFILE=gateway,bare-ws,plain-proxy,upstream,load (any of): run those with --cpu-prof. */
export const PROFILE = new Set((process.env.BENCH_PROFILE ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''))

/** Share of the machine used by other processes above which a run is flagged as noisy. */
export const NOISY_SHARE = 0.1

/**
 * handshakeCpuRatio: verified handshakes per server CPU-second, gateway / bare ws (the
 * verdict: the load generator, not the server, sets the wall-clock rate on 2 shared cores);
 * handshakeRatio: the wall-clock rate, context.
 */
export const TARGETS = { handshakeRatio: 0.8, handshakeCpuRatio: 0.85, handshakeP99Ms: 10, restRatio: 0.9 }

/** The environment of a gateway under test: configured as `wsds serve` is, quiet, no limits. */
export function benchGatewayEnv(keysFile: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PORT: '0',
    HOST: '127.0.0.1',
    WSDS_ALLOWED_ORIGINS: ORIGIN,
    WSDS_KEYS_FILE: keysFile,
    WSDS_RATE_LIMIT: 'off',
    WSDS_DEMO: 'off',
    WSDS_LOG_LEVEL: 'silent',
    ...extra,
  }
}

/** The environment of a load generator (bench/load/main.ts) for the same key set. */
export const benchLoadEnv = (keysFile: string): Record<string, string> => ({ BENCH_KEYS_FILE: keysFile, BENCH_ORIGIN: ORIGIN, BENCH_HOSTNAME: HOSTNAME })

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
export const children = new Set<Child>()
export const log = (text: string) => process.stderr.write(`[bench] ${text}\n`)

// ---- process plumbing ----------------------------------------------------------------------

export async function start(name: string, script: string, options: Parameters<typeof startChild>[2] = {}): Promise<Child> {
  const child = await startChild(name, script, options)
  children.add(child)
  return child
}

export async function stop(child: Child): Promise<void> {
  children.delete(child)
  await child.stop()
}

export function killAll(): void {
  for (const child of children) child.proc.kill('SIGKILL')
}

/**
 * Runs `work` and samples CPU (of `pids` and of the whole machine) from `fromMs` after the
 * start for `durationMs`: the window the load generator measures in.
 */
export async function measured<T>(pids: number[], fromMs: number, durationMs: number, work: () => Promise<T>): Promise<{ result: T; cpu: CpuDelta }> {
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
export function alternating<T extends Child>(baseline: T, subject: T, roundsEach: number): T[] {
  const out: T[] = []
  for (let i = 0; i < roundsEach; i++) out.push(...(i % 2 === 0 ? [baseline, subject] : [subject, baseline]))
  return out
}

// ---- phases --------------------------------------------------------------------------------

export interface HandshakeRun {
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

export async function handshakePhase(load: Child, baseline: Child, subject: Child, concurrency: number, totalMs: number, roundsEach: number) {
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

export interface RestRun {
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

export async function restPhase(load: Child, upstream: Child, rounds: Child[], totalMs: number, urlOf: (c: Child) => string, headers: Record<string, string>) {
  const acc = new Map<Child, { runs: any[]; serverCpuMs: number; upstreamCpuMs: number; loadCpuMs: number; othersMs: number; wallMs: number }>()
  for (const child of new Set(rounds)) {
    await load.call('autocannon', { url: urlOf(child), headers, connections: REST_CONNECTIONS, warmupMs: 0, durationMs: WARMUP_MS })
  }
  for (const child of rounds) {
    // autocannon runs whole seconds (it rounds a duration up), so rounds are whole seconds
    // with no separate ramp: the CPU window then covers exactly what autocannon counts.
    const warmupMs = 0
    const durationMs = wholeSeconds(totalMs / rounds.filter((r) => r === child).length)
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

export interface MemoryRun {
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

export async function memoryRun(load: Child, server: Child): Promise<MemoryRun> {
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

export const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a'
export const ratio = (a: number, b: number) => a / b
export const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS')
/** Ratios of adjacent rounds (subject k-th round / baseline k-th round), for the spread. */
export function pairs(subject: number[], baseline: number[]) {
  const r = subject.map((v, i) => v / baseline[i]!).sort((a, b) => a - b)
  const mid = r.length / 2
  const median = r.length % 2 === 1 ? r[Math.floor(mid)]! : (r[mid - 1]! + r[mid]!) / 2
  return { median, min: r[0]!, max: r[r.length - 1]!, all: r }
}
export const pct = (share: number) => `${fmt(share * 100)}%`

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  const line = (r: string[]) => '| ' + r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ') + ' |'
  const rule = '|' + widths.map((w, c) => (c === 0 ? '-'.repeat(w + 2) : '-'.repeat(w + 1) + ':')).join('|') + '|'
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n')
}

/** Commit and whether the working tree differs from it (the bench measures the working tree). */
export function gitState(): { commit: string | null; dirtyFiles: number | null } {
  try {
    const commit = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'package.json'], { cwd: ROOT, encoding: 'utf8' })
    return { commit, dirtyFiles: dirty.split('\n').filter((l) => l.trim() !== '').length }
  } catch {
    return { commit: null, dirtyFiles: null }
  }
}

// ---- generic throughput phase (any load tool, any number of subjects) ------------------------

/**
 * autocannon and wrk only run whole seconds (autocannon rounds a duration up: asked for
 * 1.25 s it runs 2 s), so rounds driven by them are whole seconds and have no ramp of their
 * own; otherwise the CPU window would not cover what they count.
 */
export const wholeSeconds = (ms: number) => Math.max(1000, Math.round(ms / 1000) * 1000)

export interface LoadResult {
  total: number
  seconds: number
  non2xx: number
  errors: number
  latencyMs: { mean: number; p50: number; p90: number; p99: number; max: number }
  /**
   * CPU of a load process that is not running when the window opens (wrk, started per
   * round), ms over the run: charged to the `load` role and taken out of other processes'.
   */
  loadCpuMs?: number
}

export interface Subject {
  name: string
  /** Processes whose CPU is charged to this subject, by role (e.g. proxy, gateway, upstream, load). */
  pids: Record<string, number[]>
  /** Runs the load: warmupMs unmeasured, then durationMs measured. */
  run(warmupMs: number, durationMs: number): Promise<LoadResult>
  /** The load tool runs whole seconds only (autocannon, wrk): rounds of whole seconds, no ramp. */
  wholeSeconds?: boolean
}

export interface ThroughputRun {
  total: number
  seconds: number
  perSecond: number
  non2xx: number
  errors: number
  /** Medians over rounds of each round's figure. */
  latencyMs: { mean: number; p50: number; p90: number; p99: number; max: number }
  /** CPU per operation, us, by role. */
  cpuUsPerOp: Record<string, number>
  othersShare: number
  /** ops/s of each round, in the order run. */
  rounds: number[]
}

/** Round order for n subjects: A B C, C B A, A B C ... (for two: B S S B B S, as `alternating`). */
export function rotation<T>(subjects: readonly T[], roundsEach: number): T[] {
  const out: T[] = []
  for (let i = 0; i < roundsEach; i++) out.push(...(i % 2 === 0 ? subjects : [...subjects].reverse()))
  return out
}

/**
 * Every subject gets one unmeasured warm-up of warmupMs, then `roundsEach` rounds of
 * perSideMs / roundsEach (each after a RAMP_MS ramp; whole seconds and no ramp for
 * `wholeSeconds` subjects), in `rotation` order, with CPU of
 * every role and of the rest of the machine sampled over each measured window.
 */
export async function throughputPhase(subjects: readonly Subject[], roundsEach: number, perSideMs: number, warmupMs = WARMUP_MS, rampMs = RAMP_MS): Promise<Map<Subject, ThroughputRun>> {
  // (rampMs applies to subjects that can run fractions of a second: the raw Redis GET loop.)
  for (const s of subjects) await s.run(0, warmupMs)
  const acc = new Map<Subject, { runs: LoadResult[]; cpuMs: Record<string, number>; othersMs: number; wallMs: number }>()
  for (const s of rotation(subjects, roundsEach)) {
    const durationMs = s.wholeSeconds === true ? wholeSeconds(perSideMs / roundsEach) : perSideMs / roundsEach
    const ramp = s.wholeSeconds === true ? 0 : rampMs
    const all = [...new Set(Object.values(s.pids).flat())]
    const { result: r, cpu } = await measured(all, ramp, durationMs, () => s.run(ramp, durationMs))
    if (r.non2xx > 0 || r.errors > 0) log(`${s.name}: ${r.non2xx} non-2xx and ${r.errors} errors of ${r.total}`)
    const a = acc.get(s) ?? { runs: [], cpuMs: {}, othersMs: 0, wallMs: 0 }
    a.runs.push(r)
    for (const [role, pids] of Object.entries(s.pids)) a.cpuMs[role] = (a.cpuMs[role] ?? 0) + pids.reduce((n, p) => n + (cpu.byPid[p] ?? 0), 0)
    if (r.loadCpuMs !== undefined) a.cpuMs.load = (a.cpuMs.load ?? 0) + r.loadCpuMs
    a.othersMs += Math.max(0, cpu.othersMs - (r.loadCpuMs ?? 0))
    a.wallMs += cpu.wallMs
    acc.set(s, a)
  }
  const out = new Map<Subject, ThroughputRun>()
  for (const s of subjects) {
    const a = acc.get(s)!
    const total = a.runs.reduce((n, r) => n + r.total, 0)
    const seconds = a.runs.reduce((n, r) => n + r.seconds, 0)
    const mid = (k: 'mean' | 'p50' | 'p90' | 'p99' | 'max') => summarize(a.runs.map((r) => r.latencyMs[k])).p50
    out.set(s, {
      total,
      seconds,
      perSecond: total / seconds,
      non2xx: a.runs.reduce((n, r) => n + r.non2xx, 0),
      errors: a.runs.reduce((n, r) => n + r.errors, 0),
      latencyMs: { mean: mid('mean'), p50: mid('p50'), p90: mid('p90'), p99: mid('p99'), max: mid('max') },
      cpuUsPerOp: Object.fromEntries(Object.entries(a.cpuMs).map(([role, ms]) => [role, (ms * 1000) / Math.max(1, total)])),
      othersShare: a.othersMs / (a.wallMs * CPUS),
      rounds: a.runs.map((r) => Math.round(r.total / r.seconds)),
    })
  }
  return out
}

/** An autocannon run in the load generator process, as a Subject's `run`. */
export const autocannonRun =
  (load: Child, url: string, headers: Record<string, string>, connections = REST_CONNECTIONS) =>
  (warmupMs: number, durationMs: number): Promise<LoadResult> =>
    load.call('autocannon', { url, headers, connections, warmupMs, durationMs })

// ---- sections ----------------------------------------------------------------------------------

/** What each section hands back to bench/run.ts. */
export interface SectionResult {
  /** Table rows, header first. */
  rows: string[][]
  /** Lines printed under the table. */
  notes: string[]
  /** Names of measured windows where other processes used over NOISY_SHARE of the machine. */
  noisy: string[]
  errors: number
  /** The section's part of bench/results/latest.json. */
  json: Record<string, unknown>
}

export interface Verdict {
  value: number
  target: string
  pass: boolean
}

export const atLeast = (value: number, target: number, unit = 'x'): Verdict => ({ value, target: `>= ${fmt(target, 2)}${unit}`, pass: value >= target })
export const atMost = (value: number, target: number, unit = ' ms'): Verdict => ({ value, target: `<= ${target}${unit}`, pass: value <= target })
export const x = (a: number, b: number) => fmt(ratio(a, b), 2) + 'x'
export const spread = (p: { median: number; min: number; max: number }) => `${fmt(p.median, 2)}x (${fmt(p.min, 2)}-${fmt(p.max, 2)})`

/** Windows of `runs` (named) where other processes were busy. */
export function busyWindows(runs: Record<string, { othersShare: number }>): string[] {
  return Object.entries(runs)
    .filter(([, r]) => r.othersShare > NOISY_SHARE)
    .map(([name, r]) => `${name} ${pct(r.othersShare)}`)
}
