import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { decideAccess, isPlausibleConnectionId } from '../src/core/access.ts'
import { createAuthenticator } from '../src/core/authenticator.ts'
import { createFront } from '../src/core/front.ts'
import { WsdsError } from '../src/core/errors.ts'
import { Listeners, type ConnectionRecord, type Store } from '../src/core/store.ts'
import { createMemoryStore } from '../src/stores/memory.ts'

const T0 = 1_700_000_000_000
const ID = 'Q2Fubm90QmVHdWVzc2VkMQ' // 22 base64url characters, like the ids we issue
const OTHER = 'T3RoZXJDb25uZWN0aW9uMg'
const LEASE = 30_000

function record(over: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return { connectionId: ID, status: 'verified', origin: 'https://app.example.com', createdAt: T0, verifiedAt: T0, expiresAt: T0 + LEASE, ...over }
}

class Clock {
  t = T0
  now = () => this.t
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof WsdsError, `expected a WsdsError, got ${String(err)}`)
    assert.equal(err.code, code)
    return true
  })
}

function throwsWithCode(fn: () => unknown, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof WsdsError, `expected a WsdsError, got ${String(err)}`)
    assert.equal(err.code, code)
    return true
  })
}

describe('decideAccess', () => {
  it('denies a request without a connectionId as missing', () => {
    assert.deepEqual(decideAccess({ connectionId: undefined }, record(), T0), { admit: false, reason: 'missing' })
  })

  it('denies an empty connectionId as missing', () => {
    assert.deepEqual(decideAccess({ connectionId: '' }, record(), T0), { admit: false, reason: 'missing' })
  })

  it('denies malformed ids (too short, too long, bad characters) as malformed', () => {
    for (const id of ['short', 'x'.repeat(129), 'has space in it', 'semi;colon;id', 'new\nline-id-here', '<script>alert(1)</script>']) {
      assert.deepEqual(decideAccess({ connectionId: id }, record({ connectionId: id }), T0), { admit: false, reason: 'malformed' }, JSON.stringify(id))
    }
  })

  it('accepts the id shapes of both deployments as plausible', () => {
    assert.equal(isPlausibleConnectionId(ID), true)
    assert.equal(isPlausibleConnectionId('L0SM9cOFvHcCIhw='), true) // API Gateway style, with padding
    assert.equal(isPlausibleConnectionId('x'.repeat(128)), true)
    assert.equal(isPlausibleConnectionId('x'.repeat(8)), true)
    assert.equal(isPlausibleConnectionId('x'.repeat(7)), false)
    assert.equal(isPlausibleConnectionId(undefined), false)
  })

  it('denies an id with no record as unknown', () => {
    assert.deepEqual(decideAccess({ connectionId: ID }, null, T0), { admit: false, reason: 'unknown' })
  })

  it("denies an id whose record is another connection's as unknown", () => {
    assert.deepEqual(decideAccess({ connectionId: ID }, record({ connectionId: OTHER }), T0), { admit: false, reason: 'unknown' })
  })

  it('denies a pending record as pending', () => {
    assert.deepEqual(decideAccess({ connectionId: ID }, record({ status: 'pending' }), T0), { admit: false, reason: 'pending' })
  })

  it('denies a verified record whose lease has expired as lease-expired, from the expiry instant on', () => {
    assert.deepEqual(decideAccess({ connectionId: ID }, record(), T0 + LEASE), { admit: false, reason: 'lease-expired' })
    assert.deepEqual(decideAccess({ connectionId: ID }, record(), T0 + LEASE + 1), { admit: false, reason: 'lease-expired' })
  })

  it('admits a verified record within its lease, with the record', () => {
    const rec = record()
    assert.deepEqual(decideAccess({ connectionId: ID }, rec, T0 + LEASE - 1), { admit: true, record: rec })
  })

  it('checks the lease before the status: an expired pending record is lease-expired', () => {
    assert.deepEqual(decideAccess({ connectionId: ID }, record({ status: 'pending' }), T0 + LEASE), { admit: false, reason: 'lease-expired' })
  })
})

/** A store wrapper whose reads can be held open, to interleave a deletion with a read. */
function gatedStore(inner: Store) {
  let gate: { release: () => void; reached: () => void } | null = null
  let failNext: Error | null = null
  const store: Store = {
    ...inner,
    put: (r, o) => inner.put(r, o),
    delete: (id) => inner.delete(id),
    renew: (ids, o) => inner.renew(ids, o),
    onDelete: (l) => inner.onDelete(l),
    onReset: (l) => inner.onReset(l),
    onStatus: (l) => inner.onStatus(l),
    close: () => inner.close(),
    async get(id) {
      if (failNext) {
        const err = failNext
        failNext = null
        throw err
      }
      const result = await inner.get(id)
      if (gate) {
        const g = gate
        gate = null
        await new Promise<void>((resolve) => {
          g.release = resolve
          g.reached()
        })
      }
      return result
    },
  }
  return {
    store,
    /** The next get reads the record, then waits for release(). */
    hold(): { reached: Promise<void>; release: () => void } {
      let reachedResolve!: () => void
      const reached = new Promise<void>((r) => (reachedResolve = r))
      const g = { release: () => {}, reached: () => reachedResolve() }
      gate = g
      return { reached, release: () => g.release() }
    },
    failNextGet(err: Error) {
      failNext = err
    },
  }
}

/** A store with controllable deletion and reset feeds, and counted reads. */
function countingStore(clock: Clock) {
  const inner = createMemoryStore({ now: clock.now })
  let reads = 0
  const resets = new Listeners<[]>()
  const store: Store = {
    put: (r, o) => inner.put(r, o),
    get: (id) => {
      reads++
      return inner.get(id)
    },
    delete: (id) => inner.delete(id),
    renew: (ids, o) => inner.renew(ids, o),
    onDelete: (l) => inner.onDelete(l),
    onReset: (l) => resets.add(l),
    onStatus: (l) => inner.onStatus(l),
    close: () => inner.close(),
  }
  return { store, inner, reads: () => reads, reset: () => resets.emit() }
}

async function putVerified(store: Store, id = ID, ttlMs = LEASE): Promise<void> {
  await store.put(record({ connectionId: id }), { ttlMs })
}

describe('createAuthenticator', () => {
  it('admits a verified id', async () => {
    const clock = new Clock()
    const store = createMemoryStore({ now: clock.now })
    await putVerified(store)
    const auth = createAuthenticator({ store, now: clock.now })
    const decision = await auth.check({ connectionId: ID })
    assert.equal(decision.admit, true)
    assert.equal(decision.admit && decision.record.connectionId, ID)
  })

  it('denies missing, malformed and unknown ids without caching them', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    const auth = createAuthenticator({ store: s.store, now: clock.now })
    assert.deepEqual(await auth.check({ connectionId: undefined }), { admit: false, reason: 'missing' })
    assert.deepEqual(await auth.check({ connectionId: 'bad id!' }), { admit: false, reason: 'malformed' })
    assert.equal(s.reads(), 0, 'implausible ids never reach the store')
    assert.deepEqual(await auth.check({ connectionId: ID }), { admit: false, reason: 'unknown' })
    assert.equal(auth.cacheSize, 0)
  })

  it('serves the second check from the cache and counts the hit', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    await putVerified(s.store)
    const auth = createAuthenticator({ store: s.store, now: clock.now })
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
    assert.deepEqual({ hits: auth.stats.cacheHits, misses: auth.stats.cacheMisses, reads: s.reads() }, { hits: 0, misses: 1, reads: 1 })
    clock.t += 1_000
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
    assert.deepEqual({ hits: auth.stats.cacheHits, misses: auth.stats.cacheMisses, reads: s.reads() }, { hits: 1, misses: 1, reads: 1 })
    assert.equal(auth.cacheSize, 1)
  })

  it('drops a cached id the moment the store deletes it and counts the revocation', async () => {
    const clock = new Clock()
    const store = createMemoryStore({ now: clock.now })
    await putVerified(store)
    const auth = createAuthenticator({ store, now: clock.now })
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
    await store.delete(ID)
    assert.equal(auth.cacheSize, 0)
    assert.equal(auth.stats.revocations, 1)
    assert.deepEqual(await auth.check({ connectionId: ID }), { admit: false, reason: 'unknown' })
  })

  it('does not count a deletion of an id it never cached as a revocation', async () => {
    const clock = new Clock()
    const store = createMemoryStore({ now: clock.now })
    const auth = createAuthenticator({ store, now: clock.now })
    await store.delete(OTHER)
    assert.equal(auth.stats.revocations, 0)
  })

  it('re-reads the store once the cache TTL has passed', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    await putVerified(s.store, ID, 10 * 60_000)
    const auth = createAuthenticator({ store: s.store, now: clock.now, cacheTtlMs: 5_000 })
    await auth.check({ connectionId: ID })
    clock.t += 4_999
    await auth.check({ connectionId: ID })
    assert.equal(s.reads(), 1, 'within the TTL the cache answers')
    clock.t += 1
    await auth.check({ connectionId: ID })
    assert.equal(s.reads(), 2, 'at the TTL the store is read again')
  })

  it('sees a record that changed in the store once the cache TTL has passed', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    await putVerified(s.store, ID, 10 * 60_000)
    const auth = createAuthenticator({ store: s.store, now: clock.now, cacheTtlMs: 5_000 })
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
    // Changed behind the authenticator's back without a deletion event.
    await s.store.put(record({ status: 'pending' }), { ttlMs: 10 * 60_000 })
    clock.t += 5_000
    assert.deepEqual(await auth.check({ connectionId: ID }), { admit: false, reason: 'pending' })
  })

  it('does not admit a cached id past its lease (record.expiresAt)', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    // A store that does not expire records itself: the lease alone must stop admission.
    const frozen: Store = { ...s.store, get: async (id) => (id === ID ? record({ expiresAt: T0 + 1_000 }) : null) }
    const auth = createAuthenticator({ store: frozen, now: clock.now, cacheTtlMs: 300_000 })
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
    clock.t = T0 + 999
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
    assert.equal(auth.stats.cacheHits, 1)
    clock.t = T0 + 1_000
    assert.deepEqual(await auth.check({ connectionId: ID }), { admit: false, reason: 'lease-expired' })
    assert.equal(auth.stats.cacheHits, 1, 'an expired lease is not a cache hit')
  })

  it('does not admit an id whose lease lapsed in the memory store, even though it was cached', async () => {
    const clock = new Clock()
    const store = createMemoryStore({ now: clock.now })
    await putVerified(store, ID, 1_000)
    const auth = createAuthenticator({ store, now: clock.now })
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
    clock.t += 1_000
    assert.equal((await auth.check({ connectionId: ID })).admit, false)
  })

  it('never caches with cacheTtlMs 0', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    await putVerified(s.store)
    const auth = createAuthenticator({ store: s.store, now: clock.now, cacheTtlMs: 0 })
    for (let i = 0; i < 3; i++) assert.equal((await auth.check({ connectionId: ID })).admit, true)
    assert.equal(s.reads(), 3)
    assert.equal(auth.cacheSize, 0)
    assert.equal(auth.stats.cacheHits, 0)
  })

  it('does not cache a pending id: it is admitted right after it is verified', async () => {
    const clock = new Clock()
    const store = createMemoryStore({ now: clock.now })
    await store.put(record({ status: 'pending', verifiedAt: undefined }), { ttlMs: LEASE })
    const auth = createAuthenticator({ store, now: clock.now })
    assert.deepEqual(await auth.check({ connectionId: ID }), { admit: false, reason: 'pending' })
    assert.equal(auth.cacheSize, 0)
    await store.put(record({ status: 'verified' }), { ttlMs: LEASE })
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
  })

  it('does not put an id back in the cache when it was deleted while the store read was in flight', async () => {
    const clock = new Clock()
    const memory = createMemoryStore({ now: clock.now })
    await putVerified(memory)
    const g = gatedStore(memory)
    const auth = createAuthenticator({ store: g.store, now: clock.now })
    const held = g.hold()
    const pending = auth.check({ connectionId: ID })
    await held.reached // the read has returned the (still verified) record
    await memory.delete(ID)
    held.release()
    await pending // whatever it decided for the in-flight request
    assert.equal(auth.cacheSize, 0, 'the revoked id must not be cached')
    assert.deepEqual(await auth.check({ connectionId: ID }), { admit: false, reason: 'unknown' })
  })

  it('rejects with ERR_STORE_UNAVAILABLE when the store read fails, and counts it', async () => {
    const clock = new Clock()
    const memory = createMemoryStore({ now: clock.now })
    await putVerified(memory)
    const g = gatedStore(memory)
    const auth = createAuthenticator({ store: g.store, now: clock.now })
    const cause = new Error('connection refused')
    g.failNextGet(cause)
    await assert.rejects(auth.check({ connectionId: ID }), (err: unknown) => {
      assert.ok(err instanceof WsdsError)
      assert.equal(err.code, 'ERR_STORE_UNAVAILABLE')
      assert.equal(err.cause, cause)
      return true
    })
    assert.equal(auth.stats.storeErrors, 1)
    assert.equal(auth.cacheSize, 0)
    // The store recovers: the next check reads it again.
    assert.equal((await auth.check({ connectionId: ID })).admit, true)
    assert.equal(auth.stats.storeErrors, 1)
  })

  it('rejects with ERR_STORE_UNAVAILABLE when store.get throws synchronously', async () => {
    const clock = new Clock()
    const memory = createMemoryStore({ now: clock.now })
    const broken: Store = {
      ...memory,
      get: () => {
        throw new Error('sync failure')
      },
      onDelete: (l) => memory.onDelete(l),
      onReset: (l) => memory.onReset(l),
    }
    const auth = createAuthenticator({ store: broken, now: clock.now })
    await rejectsWithCode(auth.check({ connectionId: ID }), 'ERR_STORE_UNAVAILABLE')
    assert.equal(auth.stats.storeErrors, 1)
  })

  it('clears the whole cache when the store reports a reset', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    await putVerified(s.store, ID)
    await putVerified(s.store, OTHER)
    const auth = createAuthenticator({ store: s.store, now: clock.now })
    await auth.check({ connectionId: ID })
    await auth.check({ connectionId: OTHER })
    assert.equal(auth.cacheSize, 2)
    s.reset()
    assert.equal(auth.cacheSize, 0)
    await auth.check({ connectionId: ID })
    assert.equal(s.reads(), 3, 'after a reset the store is read again')
  })

  it('does not cache a read that was in flight across a reset', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    await putVerified(s.store)
    const g = gatedStore(s.store)
    const auth = createAuthenticator({ store: g.store, now: clock.now })
    const held = g.hold()
    const pending = auth.check({ connectionId: ID })
    await held.reached
    s.reset()
    held.release()
    await pending
    assert.equal(auth.cacheSize, 0)
  })

  it('holds at most maxCacheEntries ids, evicting the oldest first', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    const ids = Array.from({ length: 10 }, (_, i) => `connection-id-${String(i).padStart(4, '0')}`)
    for (const id of ids) await putVerified(s.store, id)
    const auth = createAuthenticator({ store: s.store, now: clock.now, maxCacheEntries: 3 })
    for (const id of ids) {
      assert.equal((await auth.check({ connectionId: id })).admit, true)
      assert.ok(auth.cacheSize <= 3, `cache holds ${auth.cacheSize}`)
    }
    assert.equal(auth.cacheSize, 3)
    const reads = s.reads()
    await auth.check({ connectionId: ids[9] })
    assert.equal(s.reads(), reads, 'the newest id is still cached')
    await auth.check({ connectionId: ids[0] })
    assert.equal(s.reads(), reads + 1, 'the oldest id was evicted')
  })

  it('stops listening to the store after close', async () => {
    const clock = new Clock()
    const store = createMemoryStore({ now: clock.now })
    await putVerified(store)
    const auth = createAuthenticator({ store, now: clock.now })
    await auth.check({ connectionId: ID })
    auth.close()
    assert.equal(auth.cacheSize, 0)
    await store.delete(ID)
    assert.equal(auth.stats.revocations, 0)
  })

  it('revoke() drops a cached id like a store deletion', async () => {
    const clock = new Clock()
    const s = countingStore(clock)
    await putVerified(s.store)
    const auth = createAuthenticator({ store: s.store, now: clock.now })
    await auth.check({ connectionId: ID })
    auth.revoke(ID)
    assert.equal(auth.cacheSize, 0)
    assert.equal(auth.stats.revocations, 1)
  })

  it('throws ERR_CONFIG for bad options', () => {
    const store = createMemoryStore()
    for (const cacheTtlMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
      throwsWithCode(() => createAuthenticator({ store, cacheTtlMs }), 'ERR_CONFIG')
    }
    for (const maxCacheEntries of [0, -5, 1.5, Number.NaN]) {
      throwsWithCode(() => createAuthenticator({ store, maxCacheEntries }), 'ERR_CONFIG')
    }
  })
})

describe('createFront', () => {
  const setup = async (mode: 'enforce' | 'monitor' = 'enforce') => {
    const store = createMemoryStore()
    await store.put(record(), { ttlMs: LONG })
    const decided: number[] = []
    const front = createFront({ authenticator: createAuthenticator({ store }), mode, observer: { requestDecided: (seconds) => decided.push(seconds) } })
    return { store, front, decided }
  }
  const LONG = 3_600_000

  it('answers a cached admission synchronously with one shared, frozen decision', async () => {
    const { front, decided } = await setup()
    assert.equal(front.decideCached(ID), undefined, 'nothing cached yet')
    const first = await front.decide({ connectionId: ID })
    assert.equal(first.pass, true)
    const hit = front.decideCached(ID)
    assert.ok(hit)
    assert.equal(hit, front.decideCached(ID), 'the same object every time')
    assert.ok(Object.isFrozen(hit) && Object.isFrozen(hit.headers))
    assert.deepEqual(hit.headers, { 'x-wsds-verdict': 'allow', 'x-wsds-connection-id': ID, 'x-wsds-origin': record().origin })
    assert.equal(front.decisions.allow, 3)
    assert.equal(decided.length, 3, 'the observer timed every decision')
    assert.ok(decided.every((seconds) => seconds >= 0 && seconds < 5))
  })

  it('stops answering from the cache the moment the record is deleted', async () => {
    const { store, front } = await setup()
    await front.decide({ connectionId: ID })
    assert.ok(front.decideCached(ID))
    await store.delete(ID)
    assert.equal(front.decideCached(ID), undefined)
    const after = await front.decide({ connectionId: ID })
    assert.deepEqual([after.pass, after.status, after.verdict, after.body], [false, 401, 'deny:unknown', '{"error":"unauthorized"}'])
  })

  it('admits and labels every request in monitor mode, counting the would-be denials', async () => {
    const { front } = await setup('monitor')
    const missing = await front.decide({ connectionId: undefined })
    assert.deepEqual([missing.pass, missing.status, missing.headers], [true, 401, { 'x-wsds-verdict': 'deny:missing' }])
    assert.equal((await front.decide({ connectionId: ID })).headers['x-wsds-verdict'], 'allow')
    assert.equal(front.decisions['deny:missing'], 1)
  })

  it('fails closed with 503 in enforce mode and labels deny:store-unavailable in monitor mode', async () => {
    const broken: Store = { ...createMemoryStore(), get: () => Promise.reject(new Error('down')) }
    const enforce = createFront({ authenticator: createAuthenticator({ store: broken }) })
    const refused = await enforce.decide({ connectionId: ID })
    assert.deepEqual([refused.pass, refused.status, refused.body], [false, 503, '{"error":"store-unavailable"}'])
    const monitor = createFront({ authenticator: createAuthenticator({ store: broken }), mode: 'monitor' })
    const labelled = await monitor.decide({ connectionId: ID })
    assert.deepEqual([labelled.pass, labelled.verdict], [true, 'deny:store-unavailable'])
  })

  it('refuses an unknown mode with ERR_CONFIG', () => {
    throwsWithCode(() => createFront({ authenticator: createAuthenticator({ store: createMemoryStore() }), mode: 'audit' as 'monitor' }), 'ERR_CONFIG')
  })
})
