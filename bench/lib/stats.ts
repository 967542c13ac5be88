/** Summaries and CPU accounting for the bench (read from /proc, Linux only). */
import { readFileSync } from 'node:fs'

export interface Summary {
  n: number
  mean: number
  p50: number
  p90: number
  p99: number
  max: number
}

/** Nearest-rank percentiles. */
export function summarize(values: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(values).sort()
  const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!)
  let sum = 0
  for (const v of sorted) sum += v
  return { n: sorted.length, mean: sum / Math.max(1, sorted.length), p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) }
}

const TICK_MS = 10 // USER_HZ is 100 on Linux

/** utime + stime of a process, ms. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is stat field 3 (state); utime and stime are fields 14 and 15.
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS
  } catch {
    return 0
  }
}

/** Machine-wide CPU time in user, nice and system mode (not irq/softirq, not idle), ms. */
function machineTaskCpuMs(): { taskMs: number; totalMs: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const [user = 0, nice = 0, system = 0] = v
  // guest time is already inside user; steal is time the hypervisor took away.
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
  return { taskMs: (user + nice + system) * TICK_MS, totalMs: total * TICK_MS }
}

export interface CpuSample {
  at: number
  pids: Map<number, number>
  machine: { taskMs: number; totalMs: number }
}

export function sampleCpu(pids: readonly number[]): CpuSample {
  return { at: performance.now(), pids: new Map(pids.map((p) => [p, processCpuMs(p)])), machine: machineTaskCpuMs() }
}

export interface CpuDelta {
  wallMs: number
  /** CPU ms per pid over the window. */
  byPid: Record<number, number>
  /** CPU ms of every other task on the machine (other users of the shared cores). */
  othersMs: number
  /** othersMs as a share of the whole machine's CPU time in the window. */
  othersShare: number
}

export function cpuDelta(a: CpuSample, b: CpuSample): CpuDelta {
  const byPid: Record<number, number> = {}
  let ours = 0
  for (const [pid, before] of a.pids) {
    const d = (b.pids.get(pid) ?? before) - before
    byPid[pid] = d
    ours += d
  }
  // The bench's own coordinator counts as ours too.
  const othersMs = Math.max(0, b.machine.taskMs - a.machine.taskMs - ours)
  const totalMs = Math.max(1, b.machine.totalMs - a.machine.totalMs)
  return { wallMs: b.at - a.at, byPid, othersMs, othersShare: othersMs / totalMs }
}
