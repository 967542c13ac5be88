/**
 * Batches the Redis store's record reads: every GET asked for during one turn of the event
 * loop leaves together when the loop reaches its check phase (`setImmediate`), as one MGET
 * on a single Redis or Sentinel-managed primary, or, on Redis Cluster, as GETs that ioredis
 * auto-pipelines into one write per primary (MGET may not cross slots there).
 *
 * Why the check phase and not the next tick: concurrent protected requests arrive on
 * different sockets, and Node runs each socket's data in a callback of its own, draining the
 * tick and microtask queues after each. A read deferred to the next tick (ioredis'
 * auto-pipelining alone) therefore leaves alone. `setImmediate` runs after every I/O callback
 * of the current loop turn, so it collects all the reads those requests asked for, at the
 * cost of no added wait: the loop was going to reach the check phase anyway.
 *
 * Every read in a batch was asked for before the batch leaves, so its answer reflects the
 * store after its request arrived, exactly as a GET of its own would: revocation is
 * unchanged (docs/cluster.md).
 */
import { Cluster } from 'ioredis'
import type { RedisClient } from './redis.ts'

/** Keys per MGET, and the bound on reads waiting for one batch (more start a new batch at once). */
export const MAX_READ_BATCH = 512

interface Waiting {
  key: string
  resolve(value: string | null): void
  reject(err: unknown): void
}

export type ReadBatcher = (key: string) => Promise<string | null>

export function createReadBatcher(client: RedisClient): ReadBatcher {
  const cluster = client instanceof Cluster
  let batch: Waiting[] = []
  let scheduled: ReturnType<typeof setImmediate> | null = null

  const send = (reads: Waiting[]) => {
    if (cluster) {
      for (const r of reads) client.get(r.key).then(r.resolve, r.reject)
      return
    }
    if (reads.length === 1) {
      const r = reads[0]!
      client.get(r.key).then(r.resolve, r.reject)
      return
    }
    client.mget(reads.map((r) => r.key)).then(
      (values) => {
        for (let i = 0; i < reads.length; i++) reads[i]!.resolve(values[i] ?? null)
      },
      (err: unknown) => {
        for (const r of reads) r.reject(err)
      },
    )
  }
  const flush = () => {
    scheduled = null
    const reads = batch
    batch = []
    send(reads)
  }

  return (key) =>
    new Promise<string | null>((resolve, reject) => {
      batch.push({ key, resolve, reject })
      if (batch.length >= MAX_READ_BATCH) {
        if (scheduled !== null) clearImmediate(scheduled)
        flush()
      } else if (scheduled === null) scheduled = setImmediate(flush)
    })
}
