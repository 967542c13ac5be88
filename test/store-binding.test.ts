/**
 * A bound connection's derived key (ConnectionRecord.bindKey) survives every store, so every
 * node's authenticator can check its signatures: memory, real Redis, DynamoDB (dynalite
 * through the real AWS SDK). A record without one reads back without one.
 */
import assert from 'node:assert/strict'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
// @ts-expect-error no declaration file
import dynalite from 'dynalite'
import type { ConnectionRecord, Store } from '../src/core/store.ts'
import { createDynamoDbStore, ensureTable } from '../src/stores/dynamodb.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { connectRedis, createRedisStore } from '../src/stores/redis.ts'
import { freshId } from './contracts/store-contract.ts'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { requireBinary } from './helpers/services.ts'

const KEY = Buffer.alloc(32, 0xab).toString('base64url')
const rec = (id: string, over: Partial<ConnectionRecord> = {}): ConnectionRecord => ({
  connectionId: id,
  status: 'verified',
  origin: 'https://app.example.com',
  createdAt: Date.now(),
  verifiedAt: Date.now(),
  expiresAt: Date.now() + 30_000,
  ...over,
})

async function roundTrip(store: Store): Promise<void> {
  const bound = freshId()
  const plain = freshId()
  await store.put(rec(bound, { bindKey: KEY }), { ttlMs: 30_000 })
  await store.put(rec(plain), { ttlMs: 30_000 })
  assert.equal((await store.get(bound))?.bindKey, KEY)
  assert.equal((await store.get(plain))?.bindKey, undefined)
  // A lease renewal keeps it.
  assert.deepEqual(await store.renew([bound], { ttlMs: 30_000 }), [])
  assert.equal((await store.get(bound))?.bindKey, KEY)
}

describe('bindKey in every store', () => {
  it('memory keeps it', async () => {
    const store = createMemoryStore()
    await roundTrip(store)
    await store.close()
  })

  const redisBin = requireBinary('redis-server')
  describe('Redis', { skip: redisBin.skip }, () => {
    let redis: RedisServer
    before(async () => (redis = await startRedisServer(redisBin.path!)))
    after(() => redis?.stop())
    it('keeps it', async () => {
      const store = createRedisStore({ client: connectRedis(redis.url), prefix: 'bind:', closeClient: true })
      assert.equal(await store.ready(5000), true)
      await roundTrip(store)
      await store.close()
    })
  })

  describe('DynamoDB (dynalite)', () => {
    let server: Server
    let client: DynamoDBClient
    before(async () => {
      server = (dynalite as (o: object) => Server)({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
      client = new DynamoDBClient({ endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, region: 'local', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } })
      await ensureTable(client, 'wsds-bind')
    })
    after(async () => {
      client?.destroy()
      await new Promise((r) => server?.close(r))
    })
    it('keeps it', async () => {
      const store = createDynamoDbStore({ client, tableName: 'wsds-bind' })
      await roundTrip(store)
      await store.close()
    })
  })
})
