/**
 * `npm run bench`: WSDS against baselines measured in the same run.
 *
 * Every server under test and the load generator run in their own processes (bench/servers,
 * bench/load, and for the proxy section nginx, Caddy and wrk), started from here; this
 * process only coordinates, reads /proc, prints the tables and writes
 * bench/results/latest.json. Each phase is bounded by a fixed duration or count, and a
 * watchdog ends the whole run if anything hangs.
 *
 * Sections (all by default; `npm run bench -- --only=cluster,proxies` runs some):
 *   core        handshakes, handshake latency, protected requests, memory (bench/sections/core.ts)
 *   cluster     Redis store: revocation across nodes, cold/warm cache requests, handshakes
 *   redis-ha    Redis Cluster against a single Redis: revocation p99, handshakes per CPU-second, PUBLISH vs SPUBLISH
 *   proxies     nginx auth_request and Caddy forward_auth against the same proxy alone
 *   middleware  Express, Fastify and Hono: protected route against the same route without it
 *
 * Knobs (env, for quick local runs; the documented figures use the defaults):
 *   BENCH_DURATION_MS (5000), BENCH_WARMUP_MS (1000), BENCH_IDLE (10000),
 *   BENCH_REVOCATIONS (1000),
 *   BENCH_PROFILE=<process>[,<process>...] (gateway, bare-ws, plain-proxy, upstream, load,
 *   node-a, node-b, cold, warm, gateway-redis, gateway-memory, express, fastify, hono:
 *   writes .cpuprofile files to bench/results/profiles/<process>/; read them with
 *   `tsx bench/profile-summary.ts <file>`)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { ROOT, fdLimits } from './lib/ipc.ts'
import { cpuDelta, sampleCpu } from './lib/stats.ts'
import {
  benchGatewayEnv,
  benchLoadEnv,
  CPUS,
  DURATION_MS,
  IDLE_SOCKETS,
  NOISY_SHARE,
  ORIGIN,
  PROFILE,
  RAMP_MS,
  WARMUP_MS,
  children,
  fmt,
  gitState,
  killAll,
  log,
  pct,
  sleep,
  stop,
  table,
  type SectionResult,
} from './lib/common.ts'
import type { SectionContext } from './sections/context.ts'
import { coreSection } from './sections/core.ts'
import { clusterSection, stopClusterServices } from './sections/cluster.ts'
import { redisHaSection, stopRedisHaServices } from './sections/redis-ha.ts'
import { proxiesSection, stopProxies } from './sections/proxies.ts'
import { middlewareSection } from './sections/middleware.ts'

interface Section {
  title: string
  run(ctx: SectionContext): Promise<SectionResult>
  /** Longest it may take with the default settings, ms (the watchdog's budget). */
  budgetMs: number
}

const SECTIONS: Record<string, Section> = {
  core: { title: 'Gateway against bare ws and a plain proxy', run: coreSection, budgetMs: 5 * 60_000 },
  cluster: { title: 'Cluster: Redis store, two gateway nodes (issue 3)', run: clusterSection, budgetMs: 3 * 60_000 },
  'redis-ha': { title: 'Redis Cluster against a single Redis: revocation, handshakes per CPU-second, pub/sub', run: redisHaSection, budgetMs: 4 * 60_000 },
  proxies: { title: 'Proxies: nginx auth_request and Caddy forward_auth against the proxy alone (issue 7)', run: proxiesSection, budgetMs: 3 * 60_000 },
  middleware: { title: 'Middleware: protected route against the same route without it (issue 7)', run: middlewareSection, budgetMs: 3 * 60_000 },
}

function selected(argv: readonly string[]): string[] {
  const names: string[] = []
  for (const arg of argv) {
    const m = /^--only=(.+)$/.exec(arg)
    if (m === null) throw new Error(`unknown argument ${arg} (use --only=${Object.keys(SECTIONS).join(',')})`)
    for (const name of m[1]!.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
      if (!(name in SECTIONS)) throw new Error(`unknown section ${name} (known: ${Object.keys(SECTIONS).join(', ')})`)
      names.push(name)
    }
  }
  return names.length === 0 ? Object.keys(SECTIONS) : [...new Set(names)]
}

let names: string[]
try {
  names = selected(process.argv.slice(2))
} catch (err) {
  log((err as Error).message)
  process.exit(2)
}

async function main(): Promise<void> {
  const startedAt = new Date()
  const t0 = performance.now()
  const tmp = mkdtempSync(join(tmpdir(), 'wsds-bench-'))
  const keysFile = join(tmp, 'keyset.json')
  const keySet = generateKeySet(createRandomPool(), { id: 'bench' })
  writeFileSync(keysFile, JSON.stringify({ id: keySet.id, keys: keySet.keys }))

  const fds = fdLimits()
  const needFds = IDLE_SOCKETS + 1024
  if (names.includes('core') && fds.hard < needFds) {
    log(`open-file hard limit is ${fds.hard}; ${IDLE_SOCKETS} idle sockets need about ${needFds} per process. Raise it (ulimit -Hn) or set BENCH_IDLE lower.`)
  }
  // Who else is using the shared cores before we start?
  const quiet0 = sampleCpu([process.pid])
  await sleep(1000)
  const quiet = cpuDelta(quiet0, sampleCpu([process.pid]))
  const backgroundBefore = quiet.othersMs / (quiet.wallMs * CPUS)
  log(`sections ${names.join(', ')}; node ${process.version}, ${CPUS} CPUs, ulimit -n ${fds.soft} (hard ${fds.hard}); duration ${DURATION_MS} ms, warm-up ${WARMUP_MS} ms; other processes busy ${pct(backgroundBefore)} of the machine`)
  if (backgroundBefore > NOISY_SHARE) log('warning: the machine is not idle; figures will be noisier than usual')

  const ctx: SectionContext = {
    keysFile,
    tmp,
    gatewayEnv: (upstream) => benchGatewayEnv(keysFile, upstream === null ? {} : { WSDS_UPSTREAM: upstream }),
    benchEnv: benchLoadEnv(keysFile),
    profileArgv: (name) => (PROFILE.has(name) ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench', 'results', 'profiles', name)}`] : []),
    needFds,
  }

  const results: Record<string, SectionResult> = {}
  const out = process.stdout
  try {
    for (const name of names) {
      const section = SECTIONS[name]!
      const s0 = performance.now()
      log(`section ${name}: ${section.title}`)
      try {
        results[name] = await section.run(ctx)
      } finally {
        // Whatever a section started and did not stop (it failed half-way) goes now.
        await Promise.all([...children].map((c) => stop(c).catch(() => c.proc.kill('SIGKILL'))))
      }
      const r = results[name]!
      out.write(`\n## ${section.title} (--only=${name}, ${fmt((performance.now() - s0) / 1000)} s)\n\n`)
      out.write(table(r.rows) + '\n\n')
      for (const note of r.notes) out.write(note + '\n')
      out.write(`errors: ${r.errors}\n`)
      if (r.noisy.length > 0) out.write(`warning: other processes used over ${pct(NOISY_SHARE)} of the machine during: ${r.noisy.join(', ')}; treat these figures as noisy\n`)
    }
    const seconds = (performance.now() - t0) / 1000
    out.write(`\nWSDS bench, ${startedAt.toISOString()}, node ${process.version}, ${CPUS} CPUs shared by the servers and the load generator, ${fmt(seconds)} s; other processes ${pct(backgroundBefore)} of the machine before the run\n`)
    const json = {
      startedAt: startedAt.toISOString(),
      seconds,
      sections: names,
      code: gitState(),
      machine: { node: process.version, cpus: CPUS, cpuModel: cpus()[0]?.model ?? null, fdLimit: fds, note: 'servers and load generator share the CPUs', othersShareBefore: backgroundBefore },
      settings: { origin: ORIGIN, durationMs: DURATION_MS, warmupMs: WARMUP_MS, rampMs: RAMP_MS },
      // Every figure with a target, by section: { value, target, pass }.
      verdicts: Object.fromEntries(names.map((n) => [n, results[n]!.json.verdicts])),
      errors: names.reduce((sum, n) => sum + results[n]!.errors, 0),
      noisy: Object.fromEntries(names.map((n) => [n, results[n]!.noisy])),
      ...Object.fromEntries(names.map((n) => [n, { ...results[n]!.json, table: table(results[n]!.rows), notes: results[n]!.notes }])),
    }
    const dir = join(ROOT, 'bench', 'results')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'latest.json'), JSON.stringify(json, null, 2) + '\n')
    out.write('results: bench/results/latest.json\n')
  } finally {
    await Promise.all([...children].map((c) => stop(c).catch(() => c.proc.kill('SIGKILL'))))
    await Promise.all([stopProxies(), stopClusterServices(), stopRedisHaServices()])
    rmSync(tmp, { recursive: true, force: true })
  }
}

const WATCHDOG_MS = names.reduce((sum, n) => sum + SECTIONS[n]!.budgetMs, 0)
const watchdog = setTimeout(() => {
  log(`still running after ${WATCHDOG_MS / 1000} s: stopping`)
  killAll()
  void stopProxies()
  void stopClusterServices()
  void stopRedisHaServices()
  setTimeout(() => process.exit(1), 500)
}, WATCHDOG_MS)
watchdog.unref()
process.on('SIGINT', () => {
  killAll()
  void stopProxies()
  void stopClusterServices()
  void stopRedisHaServices()
  setTimeout(() => process.exit(130), 200)
})

main().then(
  () => clearTimeout(watchdog),
  (err: unknown) => {
    log(`failed: ${err instanceof Error ? err.stack : String(err)}`)
    killAll()
    process.exitCode = 1
  },
)
