/**
 * Private Redis topologies for tests, on loopback, from Debian's redis-server:
 * - startRedisCluster(): N primaries with cluster mode on, slots split evenly, joined with
 *   CLUSTER MEET (no redis-cli needed);
 * - startSentinelSet(): a primary, a replica and 3 sentinels watching them, with short
 *   detection times so a failover takes seconds, not the default 30 s.
 * Every process can be SIGKILLed; stop() ends whatever is still running and removes the
 * temporary directory.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort, waitForPort } from './services.ts'

export interface RedisProcess {
  port: number
  child: ChildProcess
  /** SIGKILL and wait for the exit: a crash, no shutdown work. */
  kill(): Promise<void>
  /** SIGTERM and wait for the exit. */
  stop(): Promise<void>
}

const COMMON = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no']

async function spawnRedis(binary: string, args: string[], port: number, cwd: string): Promise<RedisProcess> {
  const child = spawn(binary, args, { stdio: 'ignore', cwd })
  await waitForPort(port, { timeoutMs: 5000, name: `redis-server :${port}`, child })
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill(signal)
    })
  }
  return { port, child, kill: () => end('SIGKILL'), stop: () => end('SIGTERM') }
}

async function until(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export interface RedisClusterHandle {
  nodes: RedisProcess[]
  /** `redis-cluster://127.0.0.1:p1,127.0.0.1:p2,...` */
  url: string
  /** A plain connection to one node (caller disconnects it). */
  connect(index: number): Redis
  stop(): Promise<void>
}

/**
 * `masters` primaries (default 3), all 16384 slots assigned and agreed; with `replicas: 1`,
 * one replica per primary (nodes[masters + i] replicates nodes[i]), in sync, so a SIGKILLed
 * primary fails over after about `nodeTimeoutMs` (default 2000) plus the election.
 */
export async function startRedisCluster(binary: string, masters = 3, options: { replicas?: 0 | 1; nodeTimeoutMs?: number } = {}): Promise<RedisClusterHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'wsds-rcluster-'))
  const total = masters * (1 + (options.replicas ?? 0))
  const ports: number[] = []
  for (let i = 0; i < total; i++) ports.push(await freePort())
  const nodes = await Promise.all(
    ports.map((port) =>
      spawnRedis(
        binary,
        [
          '--port', String(port), ...COMMON,
          '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
          '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 2000),
          '--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0',
        ],
        port,
        dir,
      ),
    ),
  )
  const connect = (i: number) => new Redis(ports[i]!, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 })
  const clients = ports.map((_, i) => connect(i))
  try {
    const per = Math.ceil(16384 / masters)
    await Promise.all(
      clients.slice(0, masters).map((c, i) => c.call('CLUSTER', 'ADDSLOTSRANGE', String(i * per), String(Math.min(16383, (i + 1) * per - 1)))),
    )
    for (let i = 1; i < total; i++) await clients[0]!.call('CLUSTER', 'MEET', '127.0.0.1', String(ports[i]))
    await until('every node knows every other', 15_000, async () => {
      const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>))
      return infos.every((info) => info.includes(`cluster_known_nodes:${total}`))
    })
    for (let i = masters; i < total; i++) {
      const primaryId = (await clients[i - masters]!.call('CLUSTER', 'MYID')) as string
      await until('replica attached', 10_000, async () => (await clients[i]!.call('CLUSTER', 'REPLICATE', primaryId)) === 'OK')
    }
    await until('cluster_state:ok on every node, replicas in sync', 20_000, async () => {
      const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO') as Promise<string>))
      if (!infos.every((info) => info.includes('cluster_state:ok'))) return false
      const repl = await Promise.all(clients.slice(masters).map((c) => c.info('replication')))
      return repl.every((r) => r.includes('master_link_status:up'))
    })
  } finally {
    for (const c of clients) c.disconnect()
  }
  return {
    nodes,
    url: `redis-cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`,
    connect,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface SentinelSetHandle {
  primary: RedisProcess
  replica: RedisProcess
  sentinels: RedisProcess[]
  masterName: string
  /** `redis-sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/<masterName>` */
  url: string
  /** The port the sentinels currently name as primary. */
  currentPrimaryPort(): Promise<number>
  stop(): Promise<void>
}

/**
 * One primary, one replica (diskless sync with no delay, so it is in sync within
 * milliseconds), 3 sentinels with quorum 2 and `downAfterMs` detection (default 1000).
 */
export async function startSentinelSet(binary: string, options: { downAfterMs?: number } = {}): Promise<SentinelSetHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'wsds-sentinel-'))
  const masterName = 'wsdsmaster'
  const downAfter = options.downAfterMs ?? 1000
  const [pPort, rPort, ...sPorts] = await Promise.all([0, 1, 2, 3, 4].map(() => freePort())) as [number, number, ...number[]]
  const repl = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0', '--repl-diskless-load', 'disabled']
  const primary = await spawnRedis(binary, ['--port', String(pPort), ...COMMON, ...repl], pPort, dir)
  const replica = await spawnRedis(binary, ['--port', String(rPort), ...COMMON, ...repl, '--replicaof', '127.0.0.1', String(pPort)], rPort, dir)
  const probe = new Redis(rPort, '127.0.0.1')
  try {
    await until('replica in sync', 10_000, async () => /master_link_status:up/.test(await probe.info('replication')))
  } finally {
    probe.disconnect()
  }
  const sentinels = await Promise.all(
    sPorts.map((port) => {
      const conf = join(dir, `sentinel-${port}.conf`)
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          'protected-mode no',
          `dir ${dir}`,
          `sentinel monitor ${masterName} 127.0.0.1 ${pPort} 2`,
          `sentinel down-after-milliseconds ${masterName} ${downAfter}`,
          `sentinel failover-timeout ${masterName} 10000`,
          `sentinel parallel-syncs ${masterName} 1`,
          '',
        ].join('\n'),
      )
      return spawnRedis(binary, [conf, '--sentinel'], port, dir)
    }),
  )
  const currentPrimaryPort = async () => {
    const s = new Redis(sPorts[0]!, '127.0.0.1')
    try {
      const [, port] = (await s.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as [string, string]
      return Number(port)
    } finally {
      s.disconnect()
    }
  }
  // The sentinels must have found each other and the replica before a failover can elect.
  await until('sentinels see each other and the replica', 15_000, async () => {
    const s = new Redis(sPorts[0]!, '127.0.0.1')
    try {
      const master = (await s.call('SENTINEL', 'MASTER', masterName)) as string[]
      const field = (name: string) => Number(master[master.indexOf(name) + 1])
      return field('num-other-sentinels') >= 2 && field('num-slaves') >= 1
    } finally {
      s.disconnect()
    }
  })
  return {
    primary,
    replica,
    sentinels,
    masterName,
    url: `redis-sentinel://${sPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${masterName}`,
    currentPrimaryPort,
    stop: async () => {
      await Promise.all([primary, replica, ...sentinels].map((p) => p.stop()))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface SwitchableEndpoint {
  port: number
  /** Where new connections go from now on; `dropExisting` also cuts the open ones. */
  switchTo(targetPort: number, options?: { dropExisting?: boolean }): void
  stop(): Promise<void>
}

/**
 * A TCP forwarder on a fixed loopback port, standing in for a managed Redis's failover
 * endpoint (a DNS name the provider re-points at the new primary): clients keep one
 * address while what answers behind it changes.
 */
export async function startSwitchableEndpoint(targetPort: number): Promise<SwitchableEndpoint> {
  const { createServer, connect } = await import('node:net')
  let target = targetPort
  const open = new Set<import('node:net').Socket>()
  const server = createServer((inbound) => {
    const outbound = connect(target, '127.0.0.1')
    open.add(inbound)
    open.add(outbound)
    const drop = () => {
      inbound.destroy()
      outbound.destroy()
      open.delete(inbound)
      open.delete(outbound)
    }
    inbound.on('error', drop).on('close', drop)
    outbound.on('error', drop).on('close', drop)
    inbound.pipe(outbound)
    outbound.pipe(inbound)
  })
  const port = await freePort()
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return {
    port,
    switchTo(next, options = {}) {
      target = next
      if (options.dropExisting === true) for (const s of open) s.destroy()
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy()
        server.close(() => resolve())
      }),
  }
}

/** A plain redis-server (optionally a replica of `replicaOf`), for endpoint tests. */
export async function startPlainRedis(binary: string, options: { replicaOf?: number } = {}): Promise<RedisProcess & { dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'wsds-redis-'))
  const port = await freePort()
  const repl = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0']
  const args = ['--port', String(port), ...COMMON, ...repl, ...(options.replicaOf ? ['--replicaof', '127.0.0.1', String(options.replicaOf)] : [])]
  const p = await spawnRedis(binary, args, port, dir)
  if (options.replicaOf !== undefined) {
    const probe = new Redis(port, '127.0.0.1')
    try {
      await until('replica in sync', 10_000, async () => /master_link_status:up/.test(await probe.info('replication')))
    } finally {
      probe.disconnect()
    }
  }
  return { ...p, dir }
}
