/**
 * Decision plus cache. Positive results are cached for `cacheTtlMs` (PROTOCOL.md allows
 * it), and dropped the moment the store reports the id deleted, so revocation never waits
 * for the TTL. Negative results are not cached: a pending id must be admitted as soon as it
 * is verified.
 */
import { decideAccess, isPlausibleConnectionId, type AccessDecision, type AccessRequest } from './access.ts'
import { WsdsError } from './errors.ts'
import type { ConnectionRecord, Store } from './store.ts'

export interface AuthenticatorOptions {
  store: Store
  /** How long an admitted id is trusted without reading the store, ms (default 300000; 0 = no cache). */
  cacheTtlMs?: number
  /** Upper bound on cached ids; the oldest are evicted first (default 100000). */
  maxCacheEntries?: number
  /** Clock, epoch ms (default Date.now). */
  now?: () => number
  /**
   * While the store cannot be read: 'closed' (default) answers ERR_STORE_UNAVAILABLE for
   * every id not in the cache; 'cached' keeps admitting ids that were cached when the store
   * went away, each at most `cacheTtlMs` after it was admitted (docs/cluster.md).
   */
  storeOutage?: StoreOutagePolicy
  /** Called for each admission served from the cache during an outage ('cached' only). */
  onOutageAdmission?: (connectionId: string) => void
}

export type StoreOutagePolicy = 'closed' | 'cached'

export interface AuthenticatorStats {
  cacheHits: number
  cacheMisses: number
  revocations: number
  storeErrors: number
  /** Admissions served from the cache while the store was unreachable ('cached' policy). */
  outageAdmissions: number
}

export interface Authenticator {
  /**
   * Decides on a request. Rejects with `ERR_STORE_UNAVAILABLE` when the store cannot be
   * read: the caller answers 503, never admits.
   */
  check(request: AccessRequest): Promise<AccessDecision>
  /**
   * The cached admission for an id, synchronously, or undefined on a miss (then call
   * `check`). Lets fronts answer a cache hit without a promise.
   */
  peek(connectionId: string | undefined): Extract<AccessDecision, { admit: true }> | undefined
  /** Drops a cached id (what a store deletion does). */
  revoke(connectionId: string): void
  readonly stats: Readonly<AuthenticatorStats>
  readonly cacheSize: number
  /** Unsubscribes from the store. */
  close(): void
}

interface CacheEntry {
  /** Kept whole so a hit allocates nothing. */
  decision: Extract<AccessDecision, { admit: true }>
  until: number
}

export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { store } = options
  const cacheTtlMs = options.cacheTtlMs ?? 300_000
  const maxEntries = options.maxCacheEntries ?? 100_000
  const now = options.now ?? Date.now
  if (!Number.isFinite(cacheTtlMs) || cacheTtlMs < 0) {
    throw new WsdsError('ERR_CONFIG', `cacheTtlMs must be a non-negative number, got ${cacheTtlMs}`)
  }
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    throw new WsdsError('ERR_CONFIG', `maxCacheEntries must be a positive integer, got ${maxEntries}`)
  }
  // Map keeps insertion order, which is all an oldest-first eviction needs.
  const cache = new Map<string, CacheEntry>()
  const stats: AuthenticatorStats = { cacheHits: 0, cacheMisses: 0, revocations: 0, storeErrors: 0, outageAdmissions: 0 }
  const storeOutage = options.storeOutage ?? 'closed'
  if (storeOutage !== 'closed' && storeOutage !== 'cached') {
    throw new WsdsError('ERR_CONFIG', `storeOutage must be closed or cached, got ${String(storeOutage)}`)
  }
  // 'cached' policy: what the cache held when the store last reset (it resets when it loses
  // its deletion feed, i.e. when it goes down). Read only when the store cannot be, and
  // emptied when the store is back: revocations made during the outage were not heard.
  const outageCache = new Map<string, CacheEntry>()
  // Bumped on every deletion and reset: a store read that started before one must not put
  // a now-revoked id back into the cache when it completes.
  let epoch = 0

  const revoke = (id: string) => {
    epoch++
    outageCache.delete(id)
    if (cache.delete(id)) stats.revocations++
  }
  const offDelete = store.onDelete(revoke)
  const offReset = store.onReset(() => {
    epoch++
    if (storeOutage === 'cached') {
      for (const [id, entry] of cache) {
        if (outageCache.size >= maxEntries) outageCache.delete(outageCache.keys().next().value as string)
        outageCache.set(id, entry)
      }
    }
    cache.clear()
  })
  const offStatus = store.onStatus((status) => {
    if (status === 'up') outageCache.clear()
  })

  const cached = (id: string, t: number): Extract<AccessDecision, { admit: true }> | undefined => {
    const hit = cache.get(id)
    if (hit === undefined) return undefined
    // The lease still bounds a cached entry: a dead owner's id is not admitted past it.
    if (hit.until > t && hit.decision.record.expiresAt > t) {
      stats.cacheHits++
      return hit.decision
    }
    cache.delete(id)
    return undefined
  }

  return {
    peek(connectionId) {
      return cacheTtlMs > 0 && connectionId !== undefined ? cached(connectionId, now()) : undefined
    },
    async check(request) {
      const id = request.connectionId
      const t = now()
      if (cacheTtlMs > 0 && id !== undefined) {
        const hit = cached(id, t)
        if (hit !== undefined) return hit
      }
      if (!isPlausibleConnectionId(id)) return decideAccess(request, null, t)
      stats.cacheMisses++
      const started = epoch
      let record: ConnectionRecord | null
      try {
        record = await store.get(id)
      } catch (cause) {
        stats.storeErrors++
        if (storeOutage === 'cached') {
          const entry = outageCache.get(id) ?? cache.get(id)
          if (entry !== undefined && entry.until > now()) {
            stats.outageAdmissions++
            options.onOutageAdmission?.(id)
            return entry.decision
          }
        }
        throw new WsdsError('ERR_STORE_UNAVAILABLE', 'the connection store could not be read', { cause })
      }
      const decision = decideAccess(request, record, now())
      if (decision.admit && cacheTtlMs > 0 && started === epoch) {
        if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string)
        cache.set(id, { decision, until: t + cacheTtlMs })
      }
      return decision
    },
    revoke,
    stats,
    get cacheSize() {
      return cache.size
    },
    close() {
      offDelete()
      offReset()
      offStatus()
      cache.clear()
      outageCache.clear()
    },
  }
}
