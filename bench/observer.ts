/**
 * `tsx bench/observer.ts`: what the metrics observer (core/observer.ts) costs on the hot
 * paths, in process: a front's cached decision without an observer and with the standalone
 * server's (server/metrics.ts: one prom-client Histogram.observe per decision), and one
 * observe alone. The handshake path makes one such call per verified handshake. CPU time of
 * this process, median of 7 rounds; figures belong in docs/benchmarks.md only from a quiet
 * machine. BENCH_OBSERVER_ITERATIONS (default 1000000) sets the count per round.
 *
 * Instruction counts do not depend on the machine's load: BENCH_OBSERVER_LOOP=none|prom runs
 * only N cached decisions (no observer, or the server's), once, for
 *   valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file=/dev/null \
 *     node --import tsx bench/observer.ts
 * at two values of N; the difference of the "Collected" totals over the difference of N is
 * the instructions per decision, start-up cancelled out (docs/benchmarks.md, "Metrics observer").
 */
import { createAuthenticator } from '../src/core/authenticator.ts'
import { createFront, type Front } from '../src/core/front.ts'
import type { ConnectionRecord } from '../src/core/store.ts'
import { createPrometheusObserver } from '../src/server/metrics.ts'
import { createMemoryStore } from '../src/stores/memory.ts'

const N = Number(process.env.BENCH_OBSERVER_ITERATIONS ?? 1_000_000)
const ROUNDS = 7
const ID = 'A'.repeat(43)

/** Median CPU nanoseconds per call of `run` over ROUNDS rounds of N calls. */
function cpuPerCall(run: (i: number) => void): number {
  const perCall: number[] = []
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.cpuUsage()
    for (let i = 0; i < N; i++) run(i)
    const used = process.cpuUsage(start)
    perCall.push(((used.user + used.system) * 1000) / N)
  }
  return perCall.sort((a, b) => a - b)[ROUNDS >> 1]!
}

async function cachedFront(observer?: ReturnType<typeof createPrometheusObserver>): Promise<Front> {
  const store = createMemoryStore()
  const now = Date.now()
  const record: ConnectionRecord = { connectionId: ID, status: 'verified', origin: 'https://app.example', nodeId: 'n', createdAt: now, verifiedAt: now, expiresAt: now + 3_600_000 }
  await store.put(record, { ttlMs: 3_600_000 })
  const front = createFront({ authenticator: createAuthenticator({ store }), ...(observer !== undefined ? { observer } : {}) })
  await front.decide({ connectionId: ID })
  if (front.decideCached(ID) === undefined) throw new Error('the id is not cached')
  return front
}

const loop = process.env.BENCH_OBSERVER_LOOP
if (loop !== undefined) {
  if (loop !== 'none' && loop !== 'prom') throw new Error(`BENCH_OBSERVER_LOOP must be none or prom, got ${JSON.stringify(loop)}`)
  const front = await cachedFront(loop === 'prom' ? createPrometheusObserver() : undefined)
  for (let i = 0; i < N; i++) front.decideCached(ID)
  process.exit(0)
}

const bare = await cachedFront()
const observed = await cachedFront(createPrometheusObserver())
const observer = createPrometheusObserver()
const durations = Float64Array.from({ length: 1024 }, (_, i) => (i % 97) / 10_000)

const rows: Array<[string, number]> = []
// Interleaved, twice, so a change in machine load shows up as disagreement between the pairs.
for (let pass = 0; pass < 2; pass++) {
  rows.push(['front.decideCached, no observer', cpuPerCall(() => bare.decideCached(ID))])
  rows.push(["front.decideCached, the server's prom-client observer", cpuPerCall(() => observed.decideCached(ID))])
  rows.push(['observer.requestDecided alone (Histogram.observe)', cpuPerCall((i) => observer.requestDecided(durations[i & 1023]!))])
}
process.stdout.write(`CPU per call, ns (median of ${ROUNDS} x ${N}):\n`)
for (const [what, ns] of rows) process.stdout.write(`  ${what.padEnd(58)} ${ns.toFixed(0)}\n`)
