/**
 * The contract every Store adapter honours (src/core/store.ts; PROTOCOL.md, Sequence 2 and
 * Revocation), run by each adapter's test file, as unstorage's `testDriver()` and crossws's
 * `wsTests()` are:
 *
 *   storeContract('memory', async () => {
 *     const clock = { t: 0 }
 *     const store = createMemoryStore({ now: () => clock.t })
 *     return { store, now: () => clock.t, advance: (ms) => void (clock.t += ms), cleanup: () => store.close() }
 *   })
 *
 * Time: an adapter that can take an injected clock passes `advance`; the suite then never
 * waits. Without it, expiry tests use real waits of at most 50 ms (short TTLs), so a store
 * whose expiry granularity is coarser than that must inject a clock.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import type { ConnectionRecord, Store } from '../../src/core/store.ts'

export interface StoreFixture {
  store: Store
  /** The clock the store reads (epoch ms); default Date.now. */
  now?: () => number
  /** Moves the store's clock forward; without it the suite waits for real (≤ 50 ms). */
  advance?: (ms: number) => void | Promise<void>
  /**
   * A second handle on the same shared store (another node), when the adapter has one:
   * deletions made through one must reach the other's listeners.
   */
  peer?: Store
  cleanup(): Promise<void>
}

/** Longest real wait the suite ever does. */
const MAX_REAL_WAIT_MS = 50
/** Bound on waiting for a deletion event that a store delivers asynchronously (pub/sub). */
const EVENT_TIMEOUT_MS = 5_000

let sequence = 0
/** A fresh id per use, so a shared backend (Redis, DynamoDB) never sees leftovers. */
export function freshId(label = 'c'): string {
  sequence++
  return `${label}-${process.pid}-${Date.now().toString(36)}-${sequence}`
}

export interface StoreContractOptions {
  /**
   * The adapter pushes deletions to other nodes (Redis pub/sub): the fixture must then
   * return a `peer`, and the suite checks the peer hears deletions. Memory is one process
   * and DynamoDB has no push, so they leave it false.
   */
  pushesDeletions?: boolean
}

export function storeContract(name: string, makeStore: () => Promise<StoreFixture>, options: StoreContractOptions = {}): void {
  describe(`Store contract: ${name}`, () => {
    let fx: StoreFixture
    let store: Store
    let now: () => number

    beforeEach(async () => {
      fx = await makeStore()
      store = fx.store
      now = fx.now ?? Date.now
    })
    afterEach(async () => {
      await fx.cleanup()
    })

    /** Advances the store's time by `ms`, for real when no clock was injected. */
    async function elapse(ms: number): Promise<void> {
      if (fx.advance) return void (await fx.advance(ms))
      assert.ok(ms <= MAX_REAL_WAIT_MS, `the contract waits at most ${MAX_REAL_WAIT_MS} ms for real`)
      await new Promise((resolve) => setTimeout(resolve, ms))
    }
    /** TTLs for expiry tests: short for real waits, long enough that setup never races them. */
    const shortTtl = () => (fx.advance ? 1_000 : 20)
    const pastShortTtl = () => (fx.advance ? 1_001 : MAX_REAL_WAIT_MS)
    const LONG_TTL = 60_000

    function rec(id: string, over: Partial<ConnectionRecord> = {}): ConnectionRecord {
      const t = now()
      return { connectionId: id, status: 'pending', origin: 'https://app.example.com', createdAt: t, nodeId: 'node-a', expiresAt: t + LONG_TTL, ...over }
    }

    /** Resolves with the id of the next deletion the listener hears (or rejects after a bound). */
    function nextDeletion(target: Store, wanted: string): { promise: Promise<string>; off: () => void } {
      let off = () => {}
      const promise = new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no deletion event for ${wanted}`)), EVENT_TIMEOUT_MS)
        off = target.onDelete((id) => {
          if (id !== wanted) return
          clearTimeout(timer)
          off()
          resolve(id)
        })
      })
      return { promise, off: () => off() }
    }

    it('reads back a record it stored, field for field', async () => {
      const id = freshId()
      const written = rec(id, { status: 'verified', verifiedAt: now(), nodeId: 'node-7' })
      await store.put(written, { ttlMs: LONG_TTL })
      const read = await store.get(id)
      assert.ok(read, 'record present')
      const { expiresAt, ...rest } = read
      const { expiresAt: _ignored, ...writtenRest } = written
      assert.deepEqual(rest, writtenRest)
      assert.equal(typeof expiresAt, 'number')
    })

    it('sets expiresAt to ttlMs from now on put', async () => {
      const id = freshId()
      const before = now()
      await store.put(rec(id, { expiresAt: 0 }), { ttlMs: LONG_TTL })
      const read = await store.get(id)
      // Stores that keep the lease in the backend (Redis PX) may stamp it at read time, an
      // upper bound: anywhere between put and read is correct.
      const after = now()
      assert.ok(read)
      assert.ok(read.expiresAt >= before + LONG_TTL && read.expiresAt <= after + LONG_TTL, `expiresAt ${read.expiresAt - before} ms ahead`)
    })

    it('returns null for an id it never stored', async () => {
      assert.equal(await store.get(freshId('never')), null)
    })

    it('hands out copies: changing a record read back does not change the store', async () => {
      const id = freshId()
      await store.put(rec(id), { ttlMs: LONG_TTL })
      const read = await store.get(id)
      assert.ok(read)
      read.status = 'verified'
      assert.equal((await store.get(id))?.status, 'pending')
    })

    it('is not changed by edits to the record after put', async () => {
      const id = freshId()
      const written = rec(id)
      await store.put(written, { ttlMs: LONG_TTL })
      written.status = 'verified'
      assert.equal((await store.get(id))?.status, 'pending')
    })

    it('replaces a record on a second put (pending -> verified)', async () => {
      const id = freshId()
      await store.put(rec(id), { ttlMs: LONG_TTL })
      const verifiedAt = now()
      await store.put(rec(id, { status: 'verified', verifiedAt }), { ttlMs: LONG_TTL })
      const read = await store.get(id)
      assert.equal(read?.status, 'verified')
      assert.equal(read?.verifiedAt, verifiedAt)
    })

    it('removes a record on delete', async () => {
      const id = freshId()
      await store.put(rec(id), { ttlMs: LONG_TTL })
      await store.delete(id)
      assert.equal(await store.get(id), null)
    })

    it('deletes one record without touching the others', async () => {
      const a = freshId('a')
      const b = freshId('b')
      await store.put(rec(a), { ttlMs: LONG_TTL })
      await store.put(rec(b), { ttlMs: LONG_TTL })
      await store.delete(a)
      assert.equal(await store.get(a), null)
      assert.equal((await store.get(b))?.connectionId, b)
    })

    it('tells every onDelete listener the deleted id', { timeout: EVENT_TIMEOUT_MS * 2 }, async () => {
      const id = freshId()
      await store.put(rec(id), { ttlMs: LONG_TTL })
      const first = nextDeletion(store, id)
      const second = nextDeletion(store, id)
      await store.delete(id)
      assert.deepEqual(await Promise.all([first.promise, second.promise]), [id, id])
    })

    it('stops calling a listener after it unsubscribes', { timeout: EVENT_TIMEOUT_MS * 2 }, async () => {
      const id = freshId()
      await store.put(rec(id), { ttlMs: LONG_TTL })
      const heard: string[] = []
      const off = store.onDelete((deleted) => heard.push(deleted))
      off()
      // A listener that stays subscribed tells us when the event has been delivered.
      const witness = nextDeletion(store, id)
      await store.delete(id)
      await witness.promise
      assert.deepEqual(heard, [])
    })

    it('keeps telling other listeners when one listener throws', { timeout: EVENT_TIMEOUT_MS * 2 }, async () => {
      const id = freshId()
      await store.put(rec(id), { ttlMs: LONG_TTL })
      const off = store.onDelete(() => {
        throw new Error('listener failure')
      })
      const witness = nextDeletion(store, id)
      await store.delete(id)
      assert.equal(await witness.promise, id)
      off()
    })

    it('resolves delete for an id it does not hold', async () => {
      await store.delete(freshId('absent'))
    })

    it('reads an expired record as null', async () => {
      const id = freshId()
      await store.put(rec(id), { ttlMs: shortTtl() })
      assert.notEqual(await store.get(id), null, 'present before its TTL')
      await elapse(pastShortTtl())
      assert.equal(await store.get(id), null)
    })

    it('extends expiresAt on renew and keeps the record past its first TTL', async () => {
      const id = freshId()
      const ttl = shortTtl()
      await store.put(rec(id), { ttlMs: ttl })
      const first = (await store.get(id))!.expiresAt
      await elapse(Math.floor(ttl / 2))
      assert.deepEqual(await store.renew([id], { ttlMs: LONG_TTL }), [], 'nothing missing')
      const renewed = await store.get(id)
      assert.ok(renewed, 'present after renew')
      assert.ok(renewed.expiresAt > first, 'expiresAt moved forward')
      await elapse(pastShortTtl())
      assert.notEqual(await store.get(id), null, 'still present after the first TTL')
    })

    it('renews only the ids it is given', async () => {
      const kept = freshId('kept')
      const lapsed = freshId('lapsed')
      const ttl = shortTtl()
      await store.put(rec(kept), { ttlMs: ttl })
      await store.put(rec(lapsed), { ttlMs: ttl })
      assert.deepEqual(await store.renew([kept], { ttlMs: LONG_TTL }), [])
      await elapse(pastShortTtl())
      assert.notEqual(await store.get(kept), null)
      assert.equal(await store.get(lapsed), null)
    })

    it('does not bring an expired record back on renew, and reports it missing', async () => {
      const id = freshId()
      await store.put(rec(id), { ttlMs: shortTtl() })
      await elapse(pastShortTtl())
      assert.deepEqual(await store.renew([id], { ttlMs: LONG_TTL }), [id])
      assert.equal(await store.get(id), null)
    })

    it('reports unknown ids as missing on renew without creating them, and accepts an empty batch', async () => {
      const unknown = freshId('unknown')
      assert.deepEqual(await store.renew([unknown], { ttlMs: LONG_TTL }), [unknown])
      assert.deepEqual(await store.renew([], { ttlMs: LONG_TTL }), [])
      assert.equal(await store.get(unknown), null, 'renew does not create records')
    })

    it('reports exactly the missing ids of a mixed renew batch', async () => {
      const present = freshId('present')
      const deleted = freshId('deleted')
      const never = freshId('never')
      await store.put(rec(present), { ttlMs: LONG_TTL })
      await store.put(rec(deleted), { ttlMs: LONG_TTL })
      await store.delete(deleted)
      const missing = await store.renew([present, deleted, never], { ttlMs: LONG_TTL })
      assert.deepEqual([...missing].sort(), [deleted, never].sort())
    })

    it('keeps the status and fields through a renew', async () => {
      const id = freshId()
      await store.put(rec(id, { status: 'verified', verifiedAt: now() }), { ttlMs: LONG_TTL })
      assert.deepEqual(await store.renew([id], { ttlMs: LONG_TTL * 2 }), [])
      const read = await store.get(id)
      assert.equal(read?.status, 'verified')
      assert.equal(read?.nodeId, 'node-a')
      assert.equal(read?.origin, 'https://app.example.com')
    })

    it('holds many ids at once, renews them in one batch and deletes some', async () => {
      const ids = Array.from({ length: 250 }, (_, i) => freshId(`many${i}`))
      await Promise.all(ids.map((id, i) => store.put(rec(id, { status: i % 2 === 0 ? 'verified' : 'pending' }), { ttlMs: LONG_TTL })))
      assert.deepEqual(await store.renew(ids, { ttlMs: LONG_TTL * 2 }), [], 'one batch renews them all')
      const read = await Promise.all(ids.map((id) => store.get(id)))
      read.forEach((r, i) => {
        assert.equal(r?.connectionId, ids[i])
        assert.equal(r?.status, i % 2 === 0 ? 'verified' : 'pending')
      })
      const doomed = ids.filter((_, i) => i % 3 === 0)
      await Promise.all(doomed.map((id) => store.delete(id)))
      const after = await Promise.all(ids.map((id) => store.get(id)))
      after.forEach((r, i) => assert.equal(r === null, i % 3 === 0, ids[i]))
    })

    it('returns an unsubscribe function from onReset and onStatus', () => {
      for (const off of [store.onReset(() => {}), store.onStatus(() => {})]) {
        assert.equal(typeof off, 'function')
        off()
      }
    })

    if (options.pushesDeletions !== true) return
    it("tells a peer node's listeners about a deletion", { timeout: EVENT_TIMEOUT_MS * 2 }, async () => {
      assert.ok(fx.peer, 'a store that pushes deletions must give the suite a peer')
      const id = freshId()
      await store.put(rec(id, { status: 'verified' }), { ttlMs: LONG_TTL })
      assert.equal((await fx.peer.get(id))?.status, 'verified', 'the peer reads the same record')
      const heard = nextDeletion(fx.peer, id)
      await store.delete(id)
      assert.equal(await heard.promise, id)
    })
  })
}
