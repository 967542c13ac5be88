import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb'
// dynalite has no types; it is a DynamoDB implementation served over HTTP in-process.
// @ts-expect-error no declaration file
import dynalite from 'dynalite'
import type { Server } from 'node:http'
import { createAuthenticator } from '../src/core/authenticator.ts'
import { isWsdsError } from '../src/core/errors.ts'
import type { ConnectionRecord } from '../src/core/store.ts'
import { createDynamoDbStore, ensureTable, parseDynamoDbUrl } from '../src/stores/dynamodb.ts'
import { loadConfig } from '../src/server/config.ts'
import { freshId, storeContract } from './contracts/store-contract.ts'

const T0 = 1_700_000_000_000

describe('DynamoDB store (dynalite, real AWS SDK)', () => {
  let server: Server
  let client: DynamoDBClient
  let endpoint: string
  before(async () => {
    server = (dynalite as (o: object) => Server)({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    client = new DynamoDBClient({ endpoint, region: 'local', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } })
    await ensureTable(client, 'wsds-test')
  })
  after(async () => {
    client?.destroy()
    await new Promise((r) => server?.close(r))
  })

  storeContract('dynamodb', async () => {
    const clock = { t: T0 }
    const now = () => clock.t
    const store = createDynamoDbStore({ client, tableName: 'wsds-test', now })
    // No `peer`: DynamoDB cannot push deletions to other nodes (the cache TTL bounds them).
    return { store, now, advance: (ms) => void (clock.t += ms), cleanup: () => store.close() }
  })

  const rec = (id: string, over: Partial<ConnectionRecord> = {}): ConnectionRecord => ({
    connectionId: id,
    status: 'verified',
    origin: 'https://app.example.com',
    createdAt: T0,
    verifiedAt: T0,
    expiresAt: 0,
    ...over,
  })

  it('writes an expiry DynamoDB TTL can use (epoch seconds) and filters expired items itself', async () => {
    const clock = { t: T0 }
    const store = createDynamoDbStore({ client, tableName: 'wsds-test', now: () => clock.t })
    const id = freshId()
    await store.put(rec(id), { ttlMs: 30_000 })
    const raw = await client.send(new GetItemCommand({ TableName: 'wsds-test', Key: { connectionId: { S: id } } }))
    assert.equal(raw.Item?.ttl?.N, String(Math.ceil((T0 + 30_000) / 1000)))
    clock.t += 30_001
    // The item is still in the table (TTL deletion is lazy) but reads as gone.
    const still = await client.send(new GetItemCommand({ TableName: 'wsds-test', Key: { connectionId: { S: id } } }))
    assert.ok(still.Item)
    assert.equal(await store.get(id), null)
    assert.deepEqual(await store.renew([id], { ttlMs: 30_000 }), [id], 'a lapsed lease is not renewed')
  })

  it('fails closed with ERR_STORE_UNAVAILABLE and reports status when DynamoDB is unreachable', async () => {
    const dead = new DynamoDBClient({ endpoint: 'http://127.0.0.1:9', region: 'local', credentials: { accessKeyId: 'x', secretAccessKey: 'x' }, maxAttempts: 1 })
    const store = createDynamoDbStore({ client: dead, tableName: 'wsds-test' })
    const statuses: string[] = []
    store.onStatus((s) => statuses.push(s))
    const auth = createAuthenticator({ store })
    await assert.rejects(auth.check({ connectionId: freshId() }), (err) => isWsdsError(err, 'ERR_STORE_UNAVAILABLE'))
    await assert.rejects(auth.check({ connectionId: freshId() }))
    assert.deepEqual(statuses, ['down'])
    dead.destroy()
  })

  it('parses dynamodb:// URLs and defaults the cache TTL to 5 s for this store', () => {
    assert.deepEqual(parseDynamoDbUrl('dynamodb://wsds-conns?region=eu-west-1&endpoint=http://127.0.0.1:8000'), {
      tableName: 'wsds-conns',
      config: { region: 'eu-west-1', endpoint: 'http://127.0.0.1:8000' },
    })
    assert.throws(() => parseDynamoDbUrl('dynamodb://'), { code: 'ERR_CONFIG' })
    assert.equal(loadConfig({ WSDS_STORE: 'dynamodb://t1?region=x' }).authCacheTtlMs, 5000)
    assert.equal(loadConfig({ WSDS_STORE: 'dynamodb://t1?region=x', WSDS_AUTH_CACHE_TTL_MS: '1000' }).authCacheTtlMs, 1000)
    assert.equal(loadConfig({}).authCacheTtlMs, 300_000)
  })
})
