/**
 * Server CPU per verified handshake, gateway against the bare `ws` baseline, and nothing else:
 * the core section's first phase (bench/sections/core.ts) on its own, for before/after
 * comparisons of a change to the handshake path.
 *
 *   tsx bench/handshake-cpu.ts [--rounds n] [--ms per-side] [--concurrency n] [--profile]
 *   tsx bench/handshake-cpu.ts --callgrind [--count n] [--warmup n] [--concurrency n]
 *
 * Default mode: alternating rounds as in the core section; prints server CPU per handshake
 * (utime + stime from /proc) for each side and the capacity ratio (handshakes per server
 * CPU-second, gateway / bare). `--profile` runs the gateway with --cpu-prof into
 * bench/results/profiles/handshake-gateway/ (read with bench/profile-summary.ts).
 *
 * `--callgrind`: each server runs under `valgrind --tool=callgrind` with instrumentation off; after
 * `--warmup` handshakes (default 1500, so the JIT has settled) instrumentation is switched on
 * (callgrind_control) for exactly `--count` handshakes (default 1000). Instruction counts
 * do not depend on what else runs on the machine, so they compare two versions of the code
 * on a busy machine where CPU time does not. They count user-space instructions only: the
 * kernel's share of a handshake (socket syscalls, about the same on both sides) is not in
 * them, so their ratio is not the CPU-time ratio.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { ROOT } from './lib/ipc.ts'
import { benchGatewayEnv, benchLoadEnv, fmt, handshakePhase, killAll, log, start, stop } from './lib/common.ts'

const args = process.argv.slice(2)
const opt = (name: string, fallback: number) => {
  const i = args.indexOf(name)
  return i === -1 ? fallback : Number(args[i + 1])
}
const flag = (name: string) => args.includes(name)

const tmp = mkdtempSync(join(tmpdir(), 'wsds-hs-cpu-'))
const keysFile = join(tmp, 'keyset.json')
const keySet = generateKeySet(createRandomPool(), { id: 'bench' })
writeFileSync(keysFile, JSON.stringify({ id: keySet.id, keys: keySet.keys }))
const gatewayEnv = benchGatewayEnv(keysFile)
const loadEnv = benchLoadEnv(keysFile)

/** Total instructions (Ir) in a callgrind output file. */
function instructions(file: string): number {
  const text = readFileSync(file, 'utf8')
  const m = /^totals: (\d+)/m.exec(text) ?? /^summary: (\d+)/m.exec(text)
  if (m === null) throw new Error(`no totals in ${file}`)
  return Number(m[1])
}

async function callgrind(): Promise<void> {
  const count = opt('--count', 1000)
  const warmup = opt('--warmup', 1500)
  const concurrency = opt('--concurrency', 2)
  // Everything runs tens of times slower under callgrind: deadlines that cannot fail.
  const timeoutMs = 120_000
  const load = await start('load', 'load/main.ts', { env: loadEnv })
  const results: Record<string, number> = {}
  for (const [name, script, env] of [
    ['gateway', 'servers/gateway.ts', { ...gatewayEnv, WSDS_CHALLENGE_TIMEOUT_MS: String(timeoutMs) }],
    ['bare-ws', 'servers/bare-ws.ts', { ...loadEnv, BENCH_TIMEOUT_MS: String(timeoutMs) }],
  ] as const) {
    const out = join(tmp, `callgrind.${name}.out`)
    const wrapper = ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--smc-check=all-non-file', `--callgrind-out-file=${out}`]
    const server = await start(name, script, { env, wrapper, readyTimeoutMs: 300_000 })
    const wsUrl = server.info.wsUrl as string
    log(`${name}: ${warmup} warm-up handshakes under callgrind`)
    const w = await load.call('churn', { wsUrl, count: warmup, concurrency, timeoutMs }, 3_600_000)
    if (w.errors > 0) log(`${name}: ${w.errors} warm-up errors, first: ${w.firstError}`)
    // vgdb finds the process by a file named after USER and HOST: callgrind_control needs the
    // server's environment (the gateway's sets HOST).
    const control = (...a: string[]) => execFileSync('callgrind_control', [...a, String(server.pid)], { stdio: 'ignore', env: { ...process.env, ...env } })
    control('-i', 'on')
    const r = await load.call('churn', { wsUrl, count, concurrency, timeoutMs }, 3_600_000)
    // Dumped now rather than at exit: what the process does while stopping is not a handshake.
    control('-d')
    control('-i', 'off')
    if (r.errors > 0) log(`${name}: ${r.errors} errors, first: ${r.firstError}`)
    await stop(server)
    // The dump (`<file>.1`) holds the counted handshakes; the file written at exit, the stop.
    const files = readdirSync(tmp).filter((f) => f.startsWith(`callgrind.${name}.out.`))
    const total = files.reduce((sum, f) => sum + instructions(join(tmp, f)), 0)
    if (total === 0) throw new Error(`${name}: callgrind counted nothing (${files.join(', ')})`)
    results[name] = total / r.completed
    log(`${name}: ${fmt(total)} instructions over ${r.completed} handshakes`)
  }
  await stop(load)
  const gw = results.gateway!
  const bare = results['bare-ws']!
  process.stdout.write(`user-space instructions per verified handshake (callgrind, ${count} after ${warmup} warm-up, ${concurrency} in flight)\n`)
  process.stdout.write(`  gateway ${fmt(gw)}  bare ws ${fmt(bare)}  gateway/bare ${fmt(gw / bare, 2)}x\n`)
}

async function cpuTime(): Promise<void> {
  const rounds = opt('--rounds', 4)
  const perSideMs = opt('--ms', 5000)
  const concurrency = opt('--concurrency', 32)
  const profile = flag('--profile') ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench', 'results', 'profiles', 'handshake-gateway')}`] : []
  const [load, gateway, bare] = await Promise.all([
    start('load', 'load/main.ts', { env: loadEnv }),
    start('gateway', 'servers/gateway.ts', { env: gatewayEnv, execArgv: profile }),
    start('bare-ws', 'servers/bare-ws.ts', { env: loadEnv }),
  ])
  const hs = await handshakePhase(load, bare, gateway, concurrency, perSideMs, rounds)
  await Promise.all([stop(gateway), stop(bare), stop(load)])
  const gw = hs.subject
  const b = hs.baseline
  process.stdout.write(`server CPU per verified handshake (${rounds} rounds of ${fmt(perSideMs / rounds)} ms per side, ${concurrency} in flight)\n`)
  process.stdout.write(`  gateway ${fmt(gw.serverCpuUsPerOp)} us (${fmt(gw.perSecond)}/s)  bare ws ${fmt(b.serverCpuUsPerOp)} us (${fmt(b.perSecond)}/s)\n`)
  process.stdout.write(`  handshakes per server CPU-second, gateway/bare: ${fmt(b.serverCpuUsPerOp / gw.serverCpuUsPerOp, 2)}x\n`)
  process.stdout.write(`  other processes: ${fmt(gw.othersShare * 100)}% (gateway rounds), ${fmt(b.othersShare * 100)}% (bare rounds); errors ${gw.errors + b.errors}\n`)
}

try {
  await (flag('--callgrind') ? callgrind() : cpuTime())
} catch (err) {
  log(`failed: ${err instanceof Error ? err.stack : String(err)}`)
  killAll()
  process.exitCode = 1
} finally {
  rmSync(tmp, { recursive: true, force: true })
}
