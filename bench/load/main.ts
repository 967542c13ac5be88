/**
 * The load generator process. bench/run.ts sends it commands over IPC; it never runs in
 * the same process as a server under test.
 */
import { Agent, request } from 'node:http'
import autocannon from 'autocannon'
import type WebSocket from 'ws'
import { loadKeySetFile } from '../../src/server/config.ts'
import { connectRedis } from '../../src/stores/redis.ts'
import { serveCommands } from '../lib/ipc.ts'
import { summarize } from '../lib/stats.ts'
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

/**
 * Churn for the soak run: `count` handshakes (verify, then close), `concurrency` at a time,
 * counted rather than timed so every run does the same work.
 */
async function churn(args: { wsUrl: string; count: number; concurrency: number; timeoutMs?: number }) {
  const t = target(args.wsUrl)
  const started = performance.now()
  let issued = 0
  let completed = 0
  let errors = 0
  let firstError: string | null = null
  async function worker() {
    while (issued < args.count) {
      issued++
      try {
        await handshake(t, false, args.timeoutMs)
        completed++
      } catch (err) {
        errors++
        firstError ??= String(err)
        await sleep(5)
      }
    }
  }
  await Promise.all(Array.from({ length: args.concurrency }, worker))
  return { completed, errors, firstError, seconds: (performance.now() - started) / 1000 }
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

// ---- cluster section ----------------------------------------------------------------------------

/** One GET on a keep-alive agent; resolves with the status when the body has been read. */
function get(agent: Agent, url: URL, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, headers }, (res) => {
      res.resume()
      res.once('end', () => resolve(res.statusCode ?? 0))
      res.once('error', reject)
    })
    req.setTimeout(5000, () => req.destroy(new Error('request timeout')))
    req.once('error', reject)
    req.end()
  })
}

/**
 * Revocation across nodes, `count` times: verify sockets on node A (`batch` at a time, all
 * held), make one protected call per id on node B (200, which fills B's cache), then, one id
 * at a time, close the socket on A and poll B back to back on one keep-alive connection
 * (the next request leaves as soon as the previous answer is read) until B answers 401.
 * Reported per close: ms from `ws.close()` to the end of the first 401 (what a client polling
 * B would see; an upper bound) and to the moment that request was sent (a lower bound: the
 * request before it was still admitted when B read it). Bounded: at most giveUpMs per close
 * and maxMs in all.
 */
async function revocation(args: { wsUrlA: string; urlB: string; count: number; batch: number; giveUpMs: number; maxMs: number }) {
  const url = new URL('/api/greeting?who=bench', args.urlB)
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const t = target(args.wsUrlA)
  const firstDenied: number[] = []
  const lastSent: number[] = []
  const polls: number[] = []
  const pollRtt: number[] = []
  let timeouts = 0
  let errors = 0
  let firstError: string | null = null
  let done = 0
  const started = performance.now()
  try {
    while (done < args.count && performance.now() - started < args.maxMs) {
      const n = Math.min(args.batch, args.count - done)
      const opened = await Promise.all(Array.from({ length: n }, () => handshake(t, true).catch((err: unknown) => err as Error)))
      const warmed: { ws: WebSocket; connectionId: string }[] = []
      for (const o of opened) {
        if (o instanceof Error) {
          errors++
          firstError ??= String(o)
          done++
          continue
        }
        try {
          const warm = await get(agent, url, { connectionid: o.connectionId })
          if (warm !== 200) throw new Error(`warm-up call on B answered ${warm}`)
          warmed.push({ ws: o.ws!, connectionId: o.connectionId })
        } catch (err) {
          errors++
          firstError ??= String(err)
          o.ws!.terminate()
          done++
        }
      }
      for (const { ws, connectionId } of warmed) {
        const headers = { connectionid: connectionId }
        const t0 = performance.now()
        ws.close(1000)
        let k = 0
        let sent = t0
        for (;;) {
          sent = performance.now()
          let status: number
          try {
            status = await get(agent, url, headers)
          } catch (err) {
            errors++
            firstError ??= String(err)
            break
          }
          const now = performance.now()
          k++
          pollRtt.push(now - sent)
          if (status === 401) {
            firstDenied.push(now - t0)
            lastSent.push(sent - t0)
            polls.push(k)
            break
          }
          if (status !== 200) {
            errors++
            firstError ??= `B answered ${status} while polling`
            break
          }
          if (now - t0 > args.giveUpMs) {
            timeouts++
            break
          }
        }
        done++
      }
    }
  } finally {
    agent.destroy()
  }
  return {
    closes: firstDenied.length,
    timeouts,
    errors,
    firstError,
    seconds: (performance.now() - started) / 1000,
    firstDeniedMs: summarize(firstDenied),
    lastSentMs: summarize(lastSent),
    pollsPerClose: summarize(polls),
    pollRttMs: summarize(pollRtt),
  }
}

/**
 * The cluster request figures' baseline: `concurrency` GETs of `key` kept in flight on one
 * ioredis connection (as a gateway node has one command connection), for warmupMs +
 * durationMs; counts the GETs completed in the measured window.
 */
async function redisGets(args: { redisUrl: string; key: string; concurrency: number; warmupMs: number; durationMs: number }) {
  const client = connectRedis(args.redisUrl)
  try {
    await new Promise<void>((resolve, reject) => {
      if (client.status === 'ready') return resolve()
      client.once('ready', () => resolve())
      client.once('error', reject)
    })
    const start = performance.now()
    const measureFrom = start + args.warmupMs
    const stopAt = measureFrom + args.durationMs
    let total = 0
    let errors = 0
    let missing = 0
    const latency: number[] = []
    async function worker() {
      while (performance.now() < stopAt) {
        const t0 = performance.now()
        try {
          const v = await client.get(args.key)
          const end = performance.now()
          if (end >= measureFrom && end <= stopAt) {
            total++
            if (v === null) missing++
            if ((total & 7) === 0) latency.push(end - t0)
          }
        } catch {
          errors++
          await sleep(5)
        }
      }
    }
    await Promise.all(Array.from({ length: args.concurrency }, worker))
    const l = summarize(latency)
    // `non2xx`: GETs that found no record (the key must exist for the comparison to hold).
    return { total, seconds: args.durationMs / 1000, non2xx: missing, errors, latencyMs: { mean: l.mean, p50: l.p50, p90: l.p90, p99: l.p99, max: l.max } }
  } finally {
    client.disconnect()
  }
}

serveCommands({}, { handshakes, churn, verifyHold, openIdle, closeHeld, autocannon: cannon, revocation, redisGets })
