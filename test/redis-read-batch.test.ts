/**
 * The Redis store's read batching (src/stores/redis-read-batch.ts) against a real
 * redis-server: reads of one event-loop turn leave as one MGET, reads from separate I/O
 * callbacks of one turn are batched too, every read gets its own answer, and a failed batch
 * fails every read in it.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { MAX_READ_BATCH, createReadBatcher } from '../src/stores/redis-read-batch.ts'
import { REDIS_CLIENT_DEFAULTS, connectRedis, createRedisStore } from '../src/stores/redis.ts'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { requireBinary } from './helpers/services.ts'

const redisBin = requireBinary('redis-server')

/** Calls of one command so far, from INFO commandstats. */
async function calls(admin: Redis, command: string): Promise<number> {
  const info = await admin.info('commandstats')
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)
  return m === null ? 0 : Number(m[1])
}

describe('Redis read batching', { skip: redisBin.skip }, () => {
  let redis: RedisServer
  let admin: Redis
  before(async () => {
    redis = await startRedisServer(redisBin.path!)
    admin = new Redis(redis.url)
    await admin.mset('rb:a', '1', 'rb:b', '2', 'rb:c', '3')
  })
  after(async () => {
    admin?.disconnect()
    await redis?.stop()
  })

  it('sends the reads of one turn as one MGET and gives each read its own value', async () => {
    const client = connectRedis(redis.url)
    try {
      await new Promise((resolve) => client.once('ready', resolve))
      const read = createReadBatcher(client)
      const [mget0, get0] = [await calls(admin, 'mget'), await calls(admin, 'get')]
      const values = await Promise.all(['rb:a', 'rb:b', 'rb:missing', 'rb:c', 'rb:a'].map(read))
      assert.deepEqual(values, ['1', '2', null, '3', '1'])
      assert.equal((await calls(admin, 'mget')) - mget0, 1)
      assert.equal((await calls(admin, 'get')) - get0, 0)
    } finally {
      client.disconnect()
    }
  })

  it('batches reads asked for in different I/O callbacks of the same loop turn', async () => {
    const client = connectRedis(redis.url)
    try {
      await new Promise((resolve) => client.once('ready', resolve))
      const read = createReadBatcher(client)
      const mget0 = await calls(admin, 'mget')
      // Three timers due at once run in one timers phase, each in its own callback (as
      // requests on different sockets do in the poll phase): all before the check phase.
      const values = await Promise.all(['rb:a', 'rb:b', 'rb:c'].map((key) => new Promise((resolve) => setTimeout(() => resolve(read(key)), 0))))
      assert.deepEqual(values, ['1', '2', '3'])
      assert.equal((await calls(admin, 'mget')) - mget0, 1)
    } finally {
      client.disconnect()
    }
  })

  it(`splits more than ${MAX_READ_BATCH} reads into several MGETs, each read still answered`, async () => {
    const client = connectRedis(redis.url)
    try {
      await new Promise((resolve) => client.once('ready', resolve))
      const read = createReadBatcher(client)
      const mget0 = await calls(admin, 'mget')
      const keys = Array.from({ length: MAX_READ_BATCH * 2 + 3 }, (_, i) => (i % 2 === 0 ? 'rb:a' : 'rb:none'))
      const values = await Promise.all(keys.map(read))
      assert.deepEqual(values, keys.map((k) => (k === 'rb:a' ? '1' : null)))
      assert.equal((await calls(admin, 'mget')) - mget0, 3)
    } finally {
      client.disconnect()
    }
  })

  it('rejects every read of a batch the server cannot answer, at once (fail closed, no offline queue)', async () => {
    const own = await startRedisServer(redisBin.path!)
    const client = new Redis(own.url, { ...REDIS_CLIENT_DEFAULTS, retryStrategy: () => 50 })
    client.on('error', () => {})
    try {
      await new Promise((resolve) => client.once('ready', resolve))
      const read = createReadBatcher(client)
      await own.stop()
      await new Promise((resolve) => setTimeout(resolve, 100))
      const started = Date.now()
      const results = await Promise.allSettled(['rb:a', 'rb:b', 'rb:c'].map(read))
      assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected', 'rejected'])
      assert.ok(Date.now() - started < 2000, 'failed within the command timeout')
    } finally {
      client.disconnect()
      await own.stop()
    }
  })

  it('is what the store reads through by default, and can be turned off (one GET per read)', async () => {
    for (const batchReads of [true, false]) {
      const store = createRedisStore({ client: connectRedis(redis.url), prefix: `rbs${String(batchReads)}:`, closeClient: true, batchReads })
      try {
        assert.equal(await store.ready(5000), true)
        const now = Date.now()
        await store.put({ connectionId: 'batchedRead01', status: 'verified', origin: 'https://app.example', createdAt: now, verifiedAt: now, expiresAt: now + 60_000 }, { ttlMs: 60_000 })
        const [mget0, get0] = [await calls(admin, 'mget'), await calls(admin, 'get')]
        const records = await Promise.all([store.get('batchedRead01'), store.get('batchedRead01'), store.get('nobodyHere01')])
        assert.deepEqual(records.map((r) => r?.connectionId ?? null), ['batchedRead01', 'batchedRead01', null])
        assert.deepEqual([(await calls(admin, 'mget')) - mget0, (await calls(admin, 'get')) - get0], batchReads ? [1, 0] : [0, 3])
      } finally {
        await store.close()
      }
    }
  })
})
