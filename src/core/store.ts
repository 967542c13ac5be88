/**
 * The store holds one record per open connection (PROTOCOL.md, Sequence 2). Adapters:
 * `stores/memory.ts` now; Redis and DynamoDB implement the same interface.
 */

export type ConnectionStatus = 'pending' | 'verified'
export type StoreStatus = 'up' | 'down'

export interface ConnectionRecord {
  connectionId: string
  status: ConnectionStatus
  /** Origin of the upgrade request, already checked against the allowlist. */
  origin: string
  /** Epoch ms. */
  createdAt: number
  /** Epoch ms, set when the status becomes verified. */
  verifiedAt?: number
  /** Node that owns the socket; the one that renews the lease. */
  nodeId?: string
  /**
   * K_req of a bound connection, base64url (PROTOCOL.md, "Request binding"): set when it is
   * verified, so every node's authenticator can check its requests' signatures. A secret for
   * the connection's lifetime: whoever can read the store can sign for that connection.
   */
  bindKey?: string
  /** Epoch ms after which the record is dead even if still stored (PROTOCOL.md, Revocation). */
  expiresAt: number
}

export interface Store {
  /** Writes (creates or replaces) a record; it expires `ttlMs` from now unless renewed. */
  put(record: ConnectionRecord, options: { ttlMs: number }): Promise<void>
  /** Reads a record; null when absent or expired. */
  get(connectionId: string): Promise<ConnectionRecord | null>
  /** Deletes a record and tells every `onDelete` listener, on every node that shares the store. */
  delete(connectionId: string): Promise<void>
  /**
   * Extends the leases of records this node owns, in batches. Resolves with the ids that
   * were not found (expired while the store was unreachable), so the owner can rewrite them.
   */
  renew(connectionIds: readonly string[], options: { ttlMs: number }): Promise<string[]>
  /** Subscribes to deletions (including other nodes'); returns the unsubscribe function. */
  onDelete(listener: (connectionId: string) => void): () => void
  /**
   * Subscribes to "anything you cached may be stale" (a store that lost its deletion feed for
   * a while). Stores that cannot miss deletions never call it.
   */
  onReset(listener: () => void): () => void
  /** Subscribes to reachability changes, for logs and health; stores that cannot fail never call it. */
  onStatus(listener: (status: StoreStatus, error?: unknown) => void): () => void
  /** Releases connections and timers. */
  close(): Promise<void>
  /**
   * Optional: delivers an operations message (docs/protocol.md, "Step-up": operator
   * re-challenges) to every node that shares the store, this one included, at most once
   * each and best effort. Stores without a feed (DynamoDB) leave it out.
   */
  broadcast?(message: string): Promise<void>
  /** Optional, with `broadcast`: subscribes to those messages; returns the unsubscribe function. */
  onBroadcast?(listener: (message: string) => void): () => void
}

/** A small listener set, shared by store adapters. */
export class Listeners<A extends unknown[]> {
  #set = new Set<(...args: A) => void>()
  add(listener: (...args: A) => void): () => void {
    this.#set.add(listener)
    return () => void this.#set.delete(listener)
  }
  emit(...args: A): void {
    for (const listener of this.#set) {
      try {
        listener(...args)
      } catch {
        // A failing listener must not stop the others from hearing of a revocation.
      }
    }
  }
  get size(): number {
    return this.#set.size
  }
}
