/**
 * `--only=redis-ha`: the Redis store on a 3-primary Redis Cluster against a single Redis,
 * in the same run (docs/cluster.md):
 *
 * 1. Revocation p99: gateway nodes A and B (separate processes) on each store; close on A,
 *    poll B until 401 (bench/load/main.ts `revocation`). BENCH_REVOCATIONS closes per store.
 * 2. Verified handshakes per gateway CPU-second, cluster against single Redis, alternating
 *    rounds (the core section's handshake phase).
 * 3. Revocation fan-out on the cluster, classic PUBLISH against sharded SPUBLISH: publish
 *    to receive latency on 2 subscribers, BENCH_PUBSUB_MESSAGES messages each (the reason
 *    the store uses classic pub/sub is in docs/cluster.md).
 */
import { Cluster, Redis } from 'ioredis'
import { findBinary } from '../../test/helpers/services.ts'
import { startRedisServer, type RedisServer } from '../../test/helpers/redis.ts'
import { startRedisCluster, type RedisClusterHandle } from '../../test/helpers/redis-ha.ts'
import { summarize } from '../lib/stats.ts'
import type { SectionContext } from './context.ts'
import { DURATION_MS, HANDSHAKE_CONCURRENCY, HANDSHAKE_ROUNDS, fmt, handshakePhase, log, ratio, start, stop, x, type SectionResult } from '../lib/common.ts'

const REVOCATIONS = Number(process.env.BENCH_REVOCATIONS ?? 1000)
const PUBSUB_MESSAGES = Number(process.env.BENCH_PUBSUB_MESSAGES ?? 2000)
const REVOCATION_MAX_MS = 90_000

let single: RedisServer | null = null
let cluster: RedisClusterHandle | null = null

export async function stopRedisHaServices(): Promise<void> {
  const [s, c] = [single, cluster]
  single = null
  cluster = null
  await Promise.all([s?.stop(), c?.stop()])
}

/** Publish-to-receive latency, ms, of `messages` sequential messages heard by 2 subscribers. */
async function pubsubLatency(url: string, mode: 'classic' | 'sharded', messages: number) {
  const nodes = url
    .replace('redis-cluster://', '')
    .split(',')
    .map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) }))
  const options = { shardedSubscribers: mode === 'sharded' }
  const publisher = new Cluster(nodes)
  const subscribers = [new Cluster(nodes, options), new Cluster(nodes, options)]
  const channel = 'bench:revoked'
  const latencies: number[] = []
  try {
    await Promise.all([publisher, ...subscribers].map((c) => new Promise((r) => c.once('ready', r))))
    const pending = new Map<string, { at: number; left: number; done: () => void }>()
    const onMessage = (_ch: string, text: string) => {
      const p = pending.get(text)
      if (p === undefined) return
      if (--p.left === 0) {
        latencies.push(performance.now() - p.at)
        pending.delete(text)
        p.done()
      }
    }
    for (const s of subscribers) {
      if (mode === 'sharded') {
        s.on('smessage', onMessage)
        await s.ssubscribe(channel)
      } else {
        s.on('message', onMessage)
        await s.subscribe(channel)
      }
    }
    for (let i = 0; i < messages; i++) {
      const text = `m${i}`
      await new Promise<void>((done) => {
        pending.set(text, { at: performance.now(), left: subscribers.length, done })
        void (mode === 'sharded' ? publisher.spublish(channel, text) : publisher.publish(channel, text))
      })
    }
  } finally {
    for (const c of [publisher, ...subscribers]) c.disconnect()
  }
  return summarize(latencies)
}

export async function redisHaSection(ctx: SectionContext): Promise<SectionResult> {
  const binary = findBinary('redis-server', ['/usr/bin/redis-server'])
  if (binary === null) throw new Error('redis-server not installed (apt-get install redis-server)')
  single = await startRedisServer(binary)
  cluster = await startRedisCluster(binary)
  const env = (store: string) => ({ ...ctx.gatewayEnv(null), WSDS_STORE: store })
  const gw = (name: string, store: string) => start(name, 'servers/gateway.ts', { env: env(store), execArgv: ctx.profileArgv(name) })
  try {
    const load = await start('load', 'load/main.ts', { env: ctx.benchEnv, execArgv: ctx.profileArgv('load') })
    const revocation = async (label: string, store: string) => {
      const [a, b] = await Promise.all([gw(`${label}-a`, store), gw(`${label}-b`, store)])
      log(`redis-ha revocation on ${label}: ${REVOCATIONS} closes on node A, polling node B until 401`)
      const rev = await load.call(
        'revocation',
        { wsUrlA: a.info.wsUrl, urlB: b.info.url, count: REVOCATIONS, batch: 50, giveUpMs: 2000, maxMs: REVOCATION_MAX_MS },
        REVOCATION_MAX_MS + 30_000,
      )
      await Promise.all([stop(a), stop(b)])
      return rev
    }
    const revSingle = await revocation('single', single.url)
    const revCluster = await revocation('cluster', cluster.url)

    const [gwSingle, gwCluster] = await Promise.all([gw('gateway-single-redis', single.url), gw('gateway-redis-cluster', cluster.url)])
    log(`redis-ha handshakes: ${HANDSHAKE_CONCURRENCY} in flight, single Redis and Redis Cluster alternating`)
    const hs = await handshakePhase(load, gwSingle, gwCluster, HANDSHAKE_CONCURRENCY, DURATION_MS, HANDSHAKE_ROUNDS)
    await Promise.all([stop(gwSingle), stop(gwCluster), stop(load)])

    log(`redis-ha pub/sub on the cluster: ${PUBSUB_MESSAGES} messages, PUBLISH then SPUBLISH`)
    const classic = await pubsubLatency(cluster.url, 'classic', PUBSUB_MESSAGES)
    const sharded = await pubsubLatency(cluster.url, 'sharded', PUBSUB_MESSAGES)

    const perCpuSecond = (usPerOp: number) => 1e6 / usPerOp
    const rows: string[][] = [
      ['Measurement', 'Redis Cluster (3 primaries)', 'Single Redis', 'Ratio', 'Target', 'Verdict'],
      [
        `Revocation, close on A to first 401 on B, p50 / p99, ms (${fmt(REVOCATIONS)} closes each)`,
        `${fmt(revCluster.firstDeniedMs.p50, 2)} / ${fmt(revCluster.firstDeniedMs.p99, 2)}`,
        `${fmt(revSingle.firstDeniedMs.p50, 2)} / ${fmt(revSingle.firstDeniedMs.p99, 2)}`,
        x(revCluster.firstDeniedMs.p99, revSingle.firstDeniedMs.p99),
        '(info)',
        '',
      ],
      [
        'Verified handshakes per gateway CPU-second',
        fmt(perCpuSecond(hs.subject.serverCpuUsPerOp)),
        fmt(perCpuSecond(hs.baseline.serverCpuUsPerOp)),
        x(perCpuSecond(hs.subject.serverCpuUsPerOp), perCpuSecond(hs.baseline.serverCpuUsPerOp)),
        '(info)',
        '',
      ],
      [`  verified handshakes/s (${HANDSHAKE_CONCURRENCY} in flight)`, fmt(hs.subject.perSecond), fmt(hs.baseline.perSecond), x(hs.subject.perSecond, hs.baseline.perSecond), '', ''],
      [
        '  handshake latency p50 / p99, ms',
        `${fmt(hs.subject.verifiedMs.p50, 2)} / ${fmt(hs.subject.verifiedMs.p99, 2)}`,
        `${fmt(hs.baseline.verifiedMs.p50, 2)} / ${fmt(hs.baseline.verifiedMs.p99, 2)}`,
        '',
        '',
        '',
      ],
      ['Cluster pub/sub, publish to both subscribers, p50 / p99, ms: SPUBLISH (left) vs PUBLISH (right)', `${fmt(sharded.p50, 3)} / ${fmt(sharded.p99, 3)}`, `${fmt(classic.p50, 3)} / ${fmt(classic.p99, 3)}`, x(sharded.p99, classic.p99), '(info)', ''],
    ]
    const errors = revSingle.errors + revSingle.timeouts + revCluster.errors + revCluster.timeouts + hs.subject.errors + hs.baseline.errors
    return {
      rows,
      notes: [
        'Both stores run on this machine as separate redis-server processes; the cluster has 3 primaries and no replicas.',
        'Handshakes per CPU-second count the gateway process only (redis-server CPU is not included).',
      ],
      noisy: [],
      errors,
      json: {
        settings: { revocations: REVOCATIONS, pubsubMessages: PUBSUB_MESSAGES, handshakeConcurrency: HANDSHAKE_CONCURRENCY, handshakeRoundsEach: HANDSHAKE_ROUNDS },
        revocation: { cluster: revCluster, single: revSingle },
        handshakes: { cluster: hs.subject, single: hs.baseline, ratio: ratio(hs.subject.perSecond, hs.baseline.perSecond) },
        pubsub: { classic, sharded },
      },
    }
  } finally {
    await stopRedisHaServices()
  }
}
