import { Listeners, type ConnectionRecord, type Store } from '../core/store.ts'

export interface MemoryStoreOptions {
  /** Clock, epoch ms (default Date.now); tests pass a fake one. */
  now?: () => number
}

export interface MemoryStore extends Store {
  /** Number of live records, for tests and metrics. */
  readonly size: number
}

/**
 * The default store for one gateway process. Deletion listeners are called synchronously
 * inside `delete`, so a closed socket's id is out of every cache before `delete` resolves.
 */
export function createMemoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  const now = options.now ?? Date.now
  const records = new Map<string, ConnectionRecord>()
  const deletes = new Listeners<[string]>()
  const resets = new Listeners<[]>()
  const broadcasts = new Listeners<[string]>()

  const live = (id: string): ConnectionRecord | null => {
    const record = records.get(id)
    if (record === undefined) return null
    if (record.expiresAt <= now()) {
      // Lazy expiry: a lapsed lease is as good as deleted, for every reader.
      records.delete(id)
      deletes.emit(id)
      return null
    }
    return record
  }

  return {
    get size() {
      for (const id of records.keys()) live(id)
      return records.size
    },
    async put(record, { ttlMs }) {
      records.set(record.connectionId, { ...record, expiresAt: now() + ttlMs })
    },
    async get(id) {
      const record = live(id)
      return record === null ? null : { ...record }
    },
    async delete(id) {
      records.delete(id)
      deletes.emit(id)
    },
    async renew(ids, { ttlMs }) {
      const expiresAt = now() + ttlMs
      const missing: string[] = []
      for (const id of ids) {
        const record = live(id)
        if (record !== null) record.expiresAt = expiresAt
        else missing.push(id)
      }
      return missing
    },
    onDelete: (listener) => deletes.add(listener),
    onReset: (listener) => resets.add(listener),
    // One process: a broadcast reaches the gateways that share this store object.
    async broadcast(message) {
      broadcasts.emit(message)
    },
    onBroadcast: (listener) => broadcasts.add(listener),
    // Memory cannot become unreachable.
    onStatus: () => () => {},
    async close() {
      records.clear()
    },
  }
}
