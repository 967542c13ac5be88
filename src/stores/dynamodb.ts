/**
 * DynamoDB store, for the AWS deployment and for clusters that already run on DynamoDB.
 *
 * DynamoDB has no push: a deletion is heard only by the node that made it. Other nodes'
 * authenticator caches keep an id until their TTL, so with this store the cache TTL is the
 * revocation bound (the server defaults it to 5 s here). Records carry `expiresAt` (ms) for
 * our reads and `ttl` (epoch seconds) for DynamoDB's own TTL deletion, which is lazy (up to
 * days), so every read filters expired items itself.
 */
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClientConfig,
} from '@aws-sdk/client-dynamodb'
import { WsdsError } from '../core/errors.ts'
import { Listeners, type ConnectionRecord, type Store, type StoreStatus } from '../core/store.ts'

export interface DynamoDbStoreOptions {
  client: DynamoDBClient
  tableName: string
  /** Renewal updates in flight at once (default 16): DynamoDB has no batch update. */
  renewConcurrency?: number
  now?: () => number
}

export interface DynamoDbStore extends Store {
  readonly raw: DynamoDBClient
  readonly tableName: string
  /** Live (unexpired) records, by a full scan: tests and operations only. */
  count(): Promise<number>
}

export function recordToItem(r: ConnectionRecord): Record<string, AttributeValue> {
  const item: Record<string, AttributeValue> = {
    connectionId: { S: r.connectionId },
    status: { S: r.status },
    origin: { S: r.origin },
    createdAt: { N: String(r.createdAt) },
    expiresAt: { N: String(r.expiresAt) },
    ttl: { N: String(Math.ceil(r.expiresAt / 1000)) },
  }
  if (r.verifiedAt !== undefined) item.verifiedAt = { N: String(r.verifiedAt) }
  if (r.nodeId !== undefined) item.nodeId = { S: r.nodeId }
  if (r.bindKey !== undefined) item.bindKey = { S: r.bindKey }
  return item
}

export function itemToRecord(item: Record<string, AttributeValue>): ConnectionRecord | null {
  const id = item.connectionId?.S
  const status = item.status?.S
  const expiresAt = Number(item.expiresAt?.N)
  if (id === undefined || (status !== 'pending' && status !== 'verified') || !Number.isFinite(expiresAt)) return null
  const record: ConnectionRecord = {
    connectionId: id,
    status,
    origin: item.origin?.S ?? '',
    createdAt: Number(item.createdAt?.N ?? 0),
    expiresAt,
  }
  if (item.verifiedAt?.N !== undefined) record.verifiedAt = Number(item.verifiedAt.N)
  if (item.nodeId?.S !== undefined) record.nodeId = item.nodeId.S
  if (item.bindKey?.S !== undefined) record.bindKey = item.bindKey.S
  return record
}

/** Parses `dynamodb://table?region=...&endpoint=...` into client config and table name. */
export function parseDynamoDbUrl(url: string): { tableName: string; config: DynamoDBClientConfig } {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch (cause) {
    throw new WsdsError('ERR_CONFIG', `WSDS_STORE="${url}" is not a URL`, { cause })
  }
  const tableName = decodeURIComponent(parsed.hostname || parsed.pathname.replace(/^\/+/, ''))
  if (parsed.protocol !== 'dynamodb:' || !/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) {
    throw new WsdsError('ERR_CONFIG', `WSDS_STORE="${url}" must be dynamodb://<table>?region=...&endpoint=...`)
  }
  const config: DynamoDBClientConfig = {}
  const region = parsed.searchParams.get('region')
  const endpoint = parsed.searchParams.get('endpoint')
  if (region) config.region = region
  if (endpoint) config.endpoint = endpoint
  return { tableName, config }
}

/** Creates the table (on-demand, `connectionId` key) when it does not exist: local runs and tests. */
export async function ensureTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }))
    return
  } catch (err) {
    if ((err as Error).name !== 'ResourceNotFoundException') throw err
  }
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: 'PAY_PER_REQUEST',
      AttributeDefinitions: [{ AttributeName: 'connectionId', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'connectionId', KeyType: 'HASH' }],
    }),
  )
}

export function createDynamoDbStore(options: DynamoDbStoreOptions): DynamoDbStore {
  const { client, tableName } = options
  const now = options.now ?? Date.now
  const concurrency = options.renewConcurrency ?? 16
  const deletes = new Listeners<[string]>()
  const resets = new Listeners<[]>()
  const statuses = new Listeners<[StoreStatus, unknown?]>()
  let status: StoreStatus = 'up'

  // DynamoDB is reached per request, so reachability is whatever the last call saw.
  const track = async <T>(op: Promise<T>): Promise<T> => {
    try {
      const value = await op
      if (status === 'down') {
        status = 'up'
        statuses.emit('up')
      }
      return value
    } catch (err) {
      const expected = err instanceof ConditionalCheckFailedException
      if (!expected && status === 'up') {
        status = 'down'
        statuses.emit('down', err)
      }
      throw err
    }
  }

  const renewOne = async (id: string, expiresAt: number): Promise<boolean> => {
    try {
      await track(
        client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: { connectionId: { S: id } },
            UpdateExpression: 'SET expiresAt = :e, #ttl = :t',
            ConditionExpression: 'attribute_exists(connectionId) AND expiresAt > :now',
            ExpressionAttributeNames: { '#ttl': 'ttl' },
            ExpressionAttributeValues: {
              ':e': { N: String(expiresAt) },
              ':t': { N: String(Math.ceil(expiresAt / 1000)) },
              ':now': { N: String(now()) },
            },
          }),
        ),
      )
      return true
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) return false
      throw err
    }
  }

  return {
    raw: client,
    tableName,
    async put(record, { ttlMs }) {
      const item = recordToItem({ ...record, expiresAt: now() + ttlMs })
      await track(client.send(new PutItemCommand({ TableName: tableName, Item: item })))
    },
    async get(id) {
      const out = await track(
        client.send(new GetItemCommand({ TableName: tableName, Key: { connectionId: { S: id } }, ConsistentRead: true })),
      )
      if (out.Item === undefined) return null
      const record = itemToRecord(out.Item)
      // TTL deletion is lazy: an expired item can be read for a long time after.
      return record === null || record.expiresAt <= now() ? null : record
    },
    async delete(id) {
      deletes.emit(id)
      await track(client.send(new DeleteItemCommand({ TableName: tableName, Key: { connectionId: { S: id } } })))
      deletes.emit(id)
    },
    async renew(ids, { ttlMs }) {
      const expiresAt = now() + ttlMs
      const missing: string[] = []
      let next = 0
      const worker = async () => {
        while (next < ids.length) {
          const id = ids[next++]!
          if (!(await renewOne(id, expiresAt))) missing.push(id)
        }
      }
      await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, worker))
      return missing
    },
    onDelete: (listener) => deletes.add(listener),
    onReset: (listener) => resets.add(listener),
    onStatus: (listener) => statuses.add(listener),
    async count() {
      let n = 0
      let start: Record<string, AttributeValue> | undefined
      const t = now()
      do {
        const out = await client.send(new ScanCommand({ TableName: tableName, ExclusiveStartKey: start, ConsistentRead: true }))
        for (const item of out.Items ?? []) {
          const r = itemToRecord(item)
          if (r !== null && r.expiresAt > t) n++
        }
        start = out.LastEvaluatedKey
      } while (start !== undefined)
      return n
    },
    async close() {},
  }
}

/** Opens a store from a `dynamodb://` URL (the client is owned by the store's caller). */
export function connectDynamoDb(url: string): { client: DynamoDBClient; tableName: string } {
  const { tableName, config } = parseDynamoDbUrl(url)
  return { client: new DynamoDBClient(config), tableName }
}
