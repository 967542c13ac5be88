/**
 * The load generator process. bench/run.ts sends it commands over IPC; it never runs in
 * the same process as a server under test.
 */
import autocannon from 'autocannon'
import type WebSocket from 'ws'
import { loadKeySetFile } from '../../src/server/config.ts'
import { serveCommands } from '../lib/ipc.ts'
import { handshake, type HandshakeTarget } from './handshake.ts'

const keys = loadKeySetFile(process.env.BENCH_KEYS_FILE!).keys
const origin = process.env.BENCH_ORIGIN!
const hostname = new URL(origin).hostname
const target = (wsUrl: string): HandshakeTarget => ({ wsUrl, origin, hostname, keys })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Keeps `concurrency` handshakes in flight for warmupMs + durationMs. Returns the handshakes
 * that complete (verified and closed) inside the measured window, with their latencies
 * (ms, to the `verified` frame and to the end of the close).
 */
async function handshakes(args: { wsUrl: string; concurrency: number; warmupMs: number; durationMs: number }) {
  const t = target(args.wsUrl)
  const start = performance.now()
  const measureFrom = start + args.warmupMs
  const stopAt = measureFrom + args.durationMs
  let errors = 0
  let firstError: string | null = null
  const verifiedMs: number[] = []
  const cycleMs: number[] = []
  async function worker() {
    while (performance.now() < stopAt) {
      try {
        const done = await handshake(t)
        const end = performance.now()
        if (end >= measureFrom && end <= stopAt) {
          verifiedMs.push(Math.round(done.verifiedMs * 1000) / 1000)
          cycleMs.push(Math.round(done.cycleMs * 1000) / 1000)
        }
      } catch (err) {
        if (performance.now() >= measureFrom) errors++
        firstError ??= String(err)
        await sleep(5)
      }
    }
  }
  await Promise.all(Array.from({ length: args.concurrency }, worker))
  return { completed: verifiedMs.length, errors, firstError, seconds: args.durationMs / 1000, verifiedMs, cycleMs }
}

// Sockets kept open between commands (the verified connection for REST calls, the idle set).
let held: WebSocket[] = []

async function verifyHold(args: { wsUrl: string }) {
  const done = await handshake(target(args.wsUrl), true)
  held.push(done.ws!)
  return { connectionId: done.connectionId }
}

async function openIdle(args: { wsUrl: string; count: number; inFlight: number }) {
  const t = target(args.wsUrl)
  const started = performance.now()
  let opened = 0
  let errors = 0
  let firstError: string | null = null
  let issued = 0
  async function worker() {
    while (issued < args.count) {
      issued++
      try {
        const done = await handshake(t, true, 30_000)
        held.push(done.ws!)
        opened++
      } catch (err) {
        errors++
        firstError ??= String(err)
      }
    }
  }
  await Promise.all(Array.from({ length: args.inFlight }, worker))
  return { opened, errors, firstError, seconds: (performance.now() - started) / 1000, holding: held.length }
}

async function closeHeld() {
  const sockets = held
  held = []
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise<void>((resolve) => {
          if (ws.readyState === ws.CLOSED) return resolve()
          const timer = setTimeout(() => (ws.terminate(), resolve()), 5000)
          ws.once('close', () => (clearTimeout(timer), resolve()))
          ws.close(1000)
        }),
    ),
  )
  return { closed: sockets.length }
}

async function cannon(args: { url: string; headers: Record<string, string>; connections: number; warmupMs: number; durationMs: number }) {
  const base = { url: args.url, headers: args.headers, connections: args.connections, pipelining: 1 }
  if (args.warmupMs > 0) await autocannon({ ...base, duration: args.warmupMs / 1000 })
  const r = await autocannon({ ...base, duration: args.durationMs / 1000 })
  return {
    total: r.requests.total,
    seconds: r.duration,
    perSecond: r.requests.total / r.duration,
    ok: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    latencyMs: { mean: r.latency.mean, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
  }
}

serveCommands({}, { handshakes, verifyHold, openIdle, closeHeld, autocannon: cannon })
