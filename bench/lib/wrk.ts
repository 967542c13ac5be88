/**
 * Runs wrk (a separate C process) against a URL for the proxy section and reads the JSON line
 * bench/load/wrk-report.lua prints. wrk is started through `sh`, whose `times` reports the
 * CPU its child used, since wrk is not running when the bench opens a CPU window.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { findBinary } from '../../test/helpers/services.ts'
import type { LoadResult } from './common.ts'

const REPORT = fileURLToPath(new URL('../load/wrk-report.lua', import.meta.url))

export const wrkBinary = findBinary('wrk', ['/usr/bin/wrk'])

/** `[m]m[s.s]s` -> ms */
const minSec = (text: string) => {
  const m = /^(\d+)m([\d.]+)s$/.exec(text)
  return m === null ? NaN : (Number(m[1]) * 60 + Number(m[2])) * 1000
}

export function runWrk(options: { url: string; headers: Record<string, string>; connections: number; threads: number; durationMs: number }): Promise<LoadResult> {
  if (wrkBinary === null) return Promise.reject(new Error('wrk not installed (apt-get install wrk)'))
  const seconds = Math.max(1, Math.round(options.durationMs / 1000))
  const args = [
    `-t${options.threads}`,
    `-c${options.connections}`,
    `-d${seconds}s`,
    '--timeout', '5s',
    '-s', REPORT,
    ...Object.entries(options.headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    options.url,
  ]
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', '"$0" "$@"; status=$?; times; exit $status', wrkBinary, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => (out += c.toString()))
    child.stderr.on('data', (c: Buffer) => (out += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.durationMs + 15_000)
    child.once('error', reject)
    child.once('exit', (code) => {
      clearTimeout(timer)
      const line = out.split('\n').find((l) => l.startsWith('{"requests"'))
      if (code !== 0 || line === undefined) return reject(new Error(`wrk failed (${code}):\n${out}`))
      const r = JSON.parse(line) as Record<string, number>
      // `times`: the shell's own user/system, then its children's (wrk's).
      const times = out.trim().split('\n').slice(-1)[0]!.trim().split(/\s+/).map(minSec)
      const ms = (us: number) => us / 1000
      resolve({
        total: r.requests!,
        seconds: r.durationUs! / 1e6,
        non2xx: r.status!,
        errors: r.connect! + r.read! + r.write! + r.timeout!,
        latencyMs: { mean: ms(r.meanUs!), p50: ms(r.p50Us!), p90: ms(r.p90Us!), p99: ms(r.p99Us!), max: ms(r.maxUs!) },
        loadCpuMs: times.length === 2 && times.every(Number.isFinite) ? times[0]! + times[1]! : undefined,
      })
    })
  })
}
