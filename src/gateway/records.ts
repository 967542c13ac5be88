/**
 * Record persistence for a gateway's sockets (PROTOCOL.md, Sequence 2 and Revocation): the
 * pending record written before the upgrade completes, the verified record, the delete on
 * close (awaited on shutdown), and one batched lease renewal for all sockets.
 */
import { newId } from '../core/lifecycle.ts'
import type { RandomSource } from '../core/random.ts'
import type { ConnectionRecord, Store } from '../core/store.ts'
import type { GatewayLogger } from './log.ts'
import type { GatewayStats } from './stats.ts'

export interface RecordKeeperOptions {
  store: Store
  /** Record lease, ms. */
  leaseMs: number
  nodeId: string
  random: RandomSource
  now: () => number
  stats: GatewayStats
  logger?: GatewayLogger
}

export interface RecordKeeper {
  /** A fresh pending record for an admitted upgrade, with a new connection id. Not yet stored. */
  pending(origin: string): ConnectionRecord
  /** Stores a record with a fresh lease. */
  put(record: ConnectionRecord): Promise<void>
  /** The verified version of `record` at epoch ms `at`, with the request-binding key if any. */
  verified(record: ConnectionRecord, at: number, bindKey: string | undefined): ConnectionRecord
  /** Deletes a record; a failure is counted and logged, never thrown. */
  delete(connectionId: string): Promise<void>
  /** Resolves once every delete under way has finished. */
  settled(): Promise<void>
  /**
   * Renews the leases of `ids()` every third of a lease, and at once whenever the store comes
   * back up. Records that lapsed meanwhile are written again from `current(id)`. Returns stop.
   */
  renewLeases(ids: () => string[], current: (id: string) => ConnectionRecord | null): () => void
}

export function createRecordKeeper(o: RecordKeeperOptions): RecordKeeper {
  const { store, leaseMs, nodeId, random, now, stats, logger } = o
  const ttl = { ttlMs: leaseMs }
  const deletes = new Set<Promise<void>>()

  function storeError(op: string, message: string) {
    return (cause: unknown) => {
      stats.storeErrors++
      logger?.debug?.({ event: 'store-error', op, error: String(cause) }, message)
    }
  }
  const deleteFailed = storeError('delete', 'could not delete record')
  const renewFailed = storeError('renew', 'could not renew leases')

  return {
    pending(origin) {
      const t = now()
      return { connectionId: newId(random), status: 'pending', origin, createdAt: t, nodeId, expiresAt: t + leaseMs }
    },
    put: (record) => store.put(record, ttl),
    verified(record, at, bindKey) {
      const next: ConnectionRecord = { ...record, status: 'verified', verifiedAt: at, expiresAt: at + leaseMs }
      // K_req goes with the record, so every node's authenticator can check signatures.
      if (bindKey !== undefined) next.bindKey = bindKey
      return next
    },
    delete(id) {
      // The lease bounds how long a record we could not delete stays admitted.
      const p = store.delete(id).catch(deleteFailed)
      deletes.add(p)
      void p.finally(() => deletes.delete(p))
      return p
    },
    async settled() {
      await Promise.all([...deletes])
    },
    renewLeases(ids, current) {
      // One timer for all leases: a batch per tick, never a command per socket per tick.
      const renew = () => {
        const batch = ids()
        if (batch.length === 0) return
        store.renew(batch, ttl).then((missing) => {
          // Records that lapsed while the store was unreachable: this node still holds the
          // sockets, so it writes them back rather than let live, verified pages lose access.
          for (const id of missing) {
            const record = current(id)
            if (record !== null) store.put(record, ttl).catch(() => void stats.storeErrors++)
          }
        }, renewFailed)
      }
      const timer = setInterval(renew, Math.max(50, Math.floor(leaseMs / 3)))
      timer.unref()
      // When the store comes back (a restart, a Sentinel or Cluster failover), renew at once:
      // records that lapsed or that replication lost are rewritten before pages notice.
      const offStoreUp = store.onStatus((status) => {
        if (status === 'up') renew()
      })
      return () => {
        clearInterval(timer)
        offStoreUp()
      }
    },
  }
}
