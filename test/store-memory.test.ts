import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ConnectionRecord } from '../src/core/store.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { storeContract } from './contracts/store-contract.ts'

const T0 = 1_700_000_000_000

function fakeClock() {
  const clock = { t: T0 }
  return { clock, now: () => clock.t }
}

storeContract('memory (fake clock)', async () => {
  const { clock, now } = fakeClock()
  const store = createMemoryStore({ now })
  return {
    store,
    now,
    advance: (ms: number) => void (clock.t += ms),
    cleanup: () => store.close(),
  }
})

// The same suite with the real clock: the contract's real-wait path stays exercised.
storeContract('memory (real clock)', async () => {
  const store = createMemoryStore()
  return { store, cleanup: () => store.close() }
})

function rec(id: string, over: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return { connectionId: id, status: 'pending', origin: 'https://app.example.com', createdAt: T0, expiresAt: 0, ...over }
}

describe('createMemoryStore', () => {
  it('calls deletion listeners synchronously, before delete returns', () => {
    const store = createMemoryStore()
    const heard: string[] = []
    store.onDelete((id) => heard.push(id))
    const done = store.delete('some-connection-id')
    // Not awaited: the listener already ran, so every cache is clean before delete resolves.
    assert.deepEqual(heard, ['some-connection-id'])
    return done
  })

  it('removes the record synchronously within delete', async () => {
    const { now } = fakeClock()
    const store = createMemoryStore({ now })
    await store.put(rec('id-1'), { ttlMs: 1_000 })
    void store.delete('id-1')
    assert.equal(store.size, 0)
  })

  it('counts live records in size', async () => {
    const { now } = fakeClock()
    const store = createMemoryStore({ now })
    assert.equal(store.size, 0)
    await store.put(rec('a'), { ttlMs: 1_000 })
    await store.put(rec('b'), { ttlMs: 1_000 })
    await store.put(rec('a', { status: 'verified' }), { ttlMs: 1_000 })
    assert.equal(store.size, 2, 'a replaced record counts once')
    await store.delete('a')
    assert.equal(store.size, 1)
  })

  it('leaves expired records out of size', async () => {
    const { clock, now } = fakeClock()
    const store = createMemoryStore({ now })
    await store.put(rec('short'), { ttlMs: 100 })
    await store.put(rec('long'), { ttlMs: 10_000 })
    clock.t += 100
    assert.equal(store.size, 1)
  })

  it('reports a lapsed lease to deletion listeners when it is noticed, like a deletion', async () => {
    const { clock, now } = fakeClock()
    const store = createMemoryStore({ now })
    const heard: string[] = []
    store.onDelete((id) => heard.push(id))
    await store.put(rec('lapsing'), { ttlMs: 100 })
    clock.t += 100
    assert.equal(await store.get('lapsing'), null)
    assert.deepEqual(heard, ['lapsing'])
    assert.equal(await store.get('lapsing'), null)
    assert.deepEqual(heard, ['lapsing'], 'reported once')
  })

  it('expires a record exactly at expiresAt', async () => {
    const { clock, now } = fakeClock()
    const store = createMemoryStore({ now })
    await store.put(rec('edge'), { ttlMs: 100 })
    clock.t += 99
    assert.equal((await store.get('edge'))?.expiresAt, T0 + 100)
    clock.t += 1
    assert.equal(await store.get('edge'), null)
  })

  it('sets expiresAt from ttlMs on renew, using its clock', async () => {
    const { clock, now } = fakeClock()
    const store = createMemoryStore({ now })
    await store.put(rec('r'), { ttlMs: 100 })
    clock.t += 50
    await store.renew(['r'], { ttlMs: 100 })
    assert.equal((await store.get('r'))?.expiresAt, T0 + 150)
  })

  it('empties on close', async () => {
    const store = createMemoryStore()
    await store.put(rec('x'), { ttlMs: 1_000 })
    await store.close()
    assert.equal(store.size, 0)
    assert.equal(await store.get('x'), null)
  })
})
