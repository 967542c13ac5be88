/**
 * The connections table on AWS: two kinds of item, and one sparse index.
 *
 * - The record, keyed by our own id (src/core/lifecycle.ts newId: 128 CSPRNG bits), as the
 *   DynamoDB store writes it (`recordToItem`), so the authorizer reads it through the same
 *   store and the same decision as self-hosted. Extra attributes, which the store ignores:
 *   `gatewayId` (API Gateway's connection id, the routing handle for `@connections`),
 *   `state` (the lifecycle's ConnectionState as JSON: the persisted state `transition()`
 *   runs on), `rev` (N, bumped by every write, for optimistic concurrency), `timerAt` (N, the
 *   deadline the armed Step Functions wait is for) and `taskToken` (that wait's token).
 * - The alias, keyed `gw#<API Gateway id>`, holding `target` = our id: every WebSocket event
 *   names API Gateway's id only. It has no `status`, so the store never reads it as a
 *   record (our ids are base64url and never contain `#`).
 *
 * - The sweep index (`SWEEP_INDEX`, KEYS_ONLY): records that carry `sweepAt` (N, epoch ms:
 *   when the re-challenge sweeper must next look at them) and `sweepShard` (S). Only
 *   verified records under WSDS_RECHALLENGE_MS have them, so the sweeper's Query reads due
 *   connections only, whatever the table holds (src/aws/sweeper.ts). The shard spreads the
 *   index over `SWEEP_SHARDS` partition values, so no single index partition takes every write.
 *
 * Every write to a record is one conditional write on `rev`: a verdict spends the
 * outstanding token and marks the record verified together, and of two racing messages
 * exactly one commits. No transactions (dynalite has none), and a deleted connection is
 * never resurrected by a late write.
 */
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb'
import type { ConnectionState } from '../core/lifecycle.ts'
import type { ConnectionRecord } from '../core/store.ts'
import { itemToRecord, recordToItem } from '../stores/dynamodb.ts'

export const ALIAS_PREFIX = 'gw#'

/** The sparse global secondary index of connections due for the sweeper (infra/stack.ts creates it). */
export const SWEEP_INDEX = 'sweep'
/** Partition values of the sweep index: `sweepShard` is "0".."15". */
export const SWEEP_SHARDS = 16

/** The index partition a connection's sweep entry lives in (its id's first character). */
export const sweepShardOf = (id: string): string => String(id.charCodeAt(0) % SWEEP_SHARDS)

export interface SessionItem {
  record: ConnectionRecord
  gatewayId: string
  state: ConnectionState
  rev: number
  timerAt: number | null
  taskToken: string | null
  /** When the sweeper must next look at this connection (epoch ms); null = never. */
  sweepAt: number | null
}

export interface SaveChange {
  state: ConnectionState
  /** The lifecycle asked for `persist-verified`: set status and verifiedAt in the same write. */
  verifiedAt?: number
  /** The bound connection's request key (PROTOCOL.md, "Request binding"), with `verifiedAt`. */
  bindKey?: string
  /** The deadline now armed; null = none; undefined = unchanged. */
  timerAt?: number | null
  /** The sweeper's next look (epoch ms); null = out of the sweep index; undefined = unchanged. */
  sweepAt?: number | null
}

export interface ConnectionsTable {
  /** Writes the record and its alias at $connect. */
  create(record: ConnectionRecord, gatewayId: string, state: ConnectionState, ttlMs: number): Promise<void>
  /** Our id for API Gateway's; null when the connection is gone. */
  resolve(gatewayId: string): Promise<string | null>
  load(id: string): Promise<SessionItem | null>
  /**
   * One conditional write on `rev`; null when another write came first or the item is gone.
   * Otherwise the wait token the item held at the moment of the write, whoever stored it.
   */
  save(id: string, rev: number, change: SaveChange): Promise<{ taskToken: string | null } | null>
  /** Stores the wait's token if the deadline armed is still `at`; false = disarmed meanwhile. */
  storeTaskToken(id: string, at: number, taskToken: string): Promise<boolean>
  /** Deletes the alias and the record; returns what the record held. */
  removeByGateway(gatewayId: string): Promise<SessionItem | null>
  removeById(id: string): Promise<SessionItem | null>
  /**
   * Ids whose `sweepAt` has come (at most `limit`, spread over the shards, oldest first in
   * each), from the sweep index: eventually consistent, so the caller re-reads each record
   * before acting.
   */
  due(now: number, limit: number): Promise<string[]>
}

const conditionFailed = (err: unknown) =>
  err instanceof ConditionalCheckFailedException || (err as Error | null)?.name === 'ConditionalCheckFailedException'

function toSession(item: Record<string, AttributeValue> | undefined): SessionItem | null {
  if (item === undefined) return null
  const record = itemToRecord(item)
  const stateText = item.state?.S
  if (record === null || stateText === undefined || item.gatewayId?.S === undefined) return null
  return {
    record,
    gatewayId: item.gatewayId.S,
    state: JSON.parse(stateText) as ConnectionState,
    rev: Number(item.rev?.N ?? 0),
    timerAt: item.timerAt?.N === undefined ? null : Number(item.timerAt.N),
    taskToken: item.taskToken?.S ?? null,
    sweepAt: item.sweepAt?.N === undefined ? null : Number(item.sweepAt.N),
  }
}

/** The alias cache's size: the mapping never changes, so a container keeps the newest ids. */
const ALIAS_CACHE_MAX = 10_000

export function createConnectionsTable(client: DynamoDBClient, tableName: string): ConnectionsTable {
  const key = (id: string) => ({ connectionId: { S: id } })
  const aliasKey = (gatewayId: string) => key(ALIAS_PREFIX + gatewayId)
  const aliases = new Map<string, string>()
  const remember = (gatewayId: string, id: string) => {
    if (aliases.size >= ALIAS_CACHE_MAX) aliases.delete(aliases.keys().next().value!)
    aliases.set(gatewayId, id)
  }
  const removeRecord = async (id: string) => {
    const out = await client.send(new DeleteItemCommand({ TableName: tableName, Key: key(id), ReturnValues: 'ALL_OLD' }))
    return toSession(out.Attributes)
  }

  return {
    async create(record, gatewayId, state, ttlMs) {
      const ttl = { N: String(Math.ceil((record.createdAt + ttlMs) / 1000)) }
      const item = { ...recordToItem(record), gatewayId: { S: gatewayId }, state: { S: JSON.stringify(state) }, rev: { N: '0' } }
      // Both at once: if one fails, $connect fails and API Gateway refuses the upgrade; a
      // record left behind is pending (admits nothing) and expires with its TTL.
      await Promise.all([
        client.send(new PutItemCommand({ TableName: tableName, Item: { ...aliasKey(gatewayId), target: { S: record.connectionId }, ttl } })),
        client.send(new PutItemCommand({ TableName: tableName, Item: item })),
      ])
      remember(gatewayId, record.connectionId)
    },

    async resolve(gatewayId) {
      const cached = aliases.get(gatewayId)
      if (cached !== undefined) return cached
      const out = await client.send(new GetItemCommand({ TableName: tableName, Key: aliasKey(gatewayId), ConsistentRead: true }))
      const id = out.Item?.target?.S ?? null
      if (id !== null) remember(gatewayId, id)
      return id
    },

    async load(id) {
      const out = await client.send(new GetItemCommand({ TableName: tableName, Key: key(id), ConsistentRead: true }))
      return toSession(out.Item)
    },

    async save(id, rev, change) {
      const sets = ['#state = :state', 'rev = :next']
      const values: Record<string, AttributeValue> = { ':state': { S: JSON.stringify(change.state) }, ':next': { N: String(rev + 1) }, ':rev': { N: String(rev) } }
      const names: Record<string, string> = { '#state': 'state' }
      const removes: string[] = []
      if (change.verifiedAt !== undefined) {
        sets.push('#status = :verified', 'verifiedAt = :at')
        names['#status'] = 'status'
        values[':verified'] = { S: 'verified' }
        values[':at'] = { N: String(change.verifiedAt) }
        if (change.bindKey !== undefined) {
          sets.push('bindKey = :bindKey')
          values[':bindKey'] = { S: change.bindKey }
        }
      }
      if (change.timerAt === null) removes.push('timerAt', 'taskToken')
      else if (change.timerAt !== undefined) {
        // A new deadline: the old wait's token no longer matters (the caller disarms it).
        sets.push('timerAt = :timer')
        values[':timer'] = { N: String(change.timerAt) }
        removes.push('taskToken')
      }
      if (change.sweepAt === null) removes.push('sweepAt', 'sweepShard')
      else if (change.sweepAt !== undefined) {
        sets.push('sweepAt = :sweepAt', 'sweepShard = :shard')
        values[':sweepAt'] = { N: String(change.sweepAt) }
        values[':shard'] = { S: sweepShardOf(id) }
      }
      try {
        const out = await client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: key(id),
            UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ' REMOVE ' + removes.join(', ') : ''}`,
            ConditionExpression: 'rev = :rev',
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
            // The old values of what this write changed: the wait token, if it removed one.
            ReturnValues: 'UPDATED_OLD',
          }),
        )
        return { taskToken: out.Attributes?.taskToken?.S ?? null }
      } catch (err) {
        if (conditionFailed(err)) return null
        throw err
      }
    },

    async storeTaskToken(id, at, taskToken) {
      try {
        await client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: key(id),
            // No rev bump: a save racing with this one learns the token from its own write
            // (ReturnValues), so the two never conflict.
            UpdateExpression: 'SET taskToken = :t',
            ConditionExpression: 'timerAt = :at',
            ExpressionAttributeValues: { ':t': { S: taskToken }, ':at': { N: String(at) } },
          }),
        )
        return true
      } catch (err) {
        if (conditionFailed(err)) return false
        throw err
      }
    },

    async removeByGateway(gatewayId) {
      const out = await client.send(new DeleteItemCommand({ TableName: tableName, Key: aliasKey(gatewayId), ReturnValues: 'ALL_OLD' }))
      aliases.delete(gatewayId)
      const id = out.Attributes?.target?.S
      return id === undefined ? null : removeRecord(id)
    },

    async removeById(id) {
      const old = await removeRecord(id)
      if (old !== null) {
        aliases.delete(old.gatewayId)
        await client.send(new DeleteItemCommand({ TableName: tableName, Key: aliasKey(old.gatewayId) }))
      }
      return old
    },

    async due(now, limit) {
      // The shards at once: a pass costs one Query round trip, not sixteen in a row.
      const perShard = Math.max(1, Math.ceil(limit / SWEEP_SHARDS))
      const shards = await Promise.all(
        Array.from({ length: SWEEP_SHARDS }, async (_, shard) => {
          const ids: string[] = []
          let start: Record<string, AttributeValue> | undefined
          do {
            const out = await client.send(
              new QueryCommand({
                TableName: tableName,
                IndexName: SWEEP_INDEX,
                KeyConditionExpression: 'sweepShard = :s AND sweepAt <= :now',
                ExpressionAttributeValues: { ':s': { S: String(shard) }, ':now': { N: String(now) } },
                Limit: Math.min(1000, perShard - ids.length),
                ...(start === undefined ? {} : { ExclusiveStartKey: start }),
              }),
            )
            for (const item of out.Items ?? []) if (item.connectionId?.S !== undefined) ids.push(item.connectionId.S)
            start = out.LastEvaluatedKey
          } while (start !== undefined && ids.length < perShard)
          return ids
        }),
      )
      return shards.flat().slice(0, limit)
    },
  }
}

/**
 * Creates the connections table with its sweep index when it does not exist: for the local
 * emulation and tests (on AWS the stack creates it, infra/stack.ts, with the same shape).
 */
export async function ensureConnectionsTable(client: DynamoDBClient, tableName: string): Promise<void> {
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
      AttributeDefinitions: [
        { AttributeName: 'connectionId', AttributeType: 'S' },
        { AttributeName: 'sweepShard', AttributeType: 'S' },
        { AttributeName: 'sweepAt', AttributeType: 'N' },
      ],
      KeySchema: [{ AttributeName: 'connectionId', KeyType: 'HASH' }],
      GlobalSecondaryIndexes: [
        {
          IndexName: SWEEP_INDEX,
          KeySchema: [
            { AttributeName: 'sweepShard', KeyType: 'HASH' },
            { AttributeName: 'sweepAt', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'KEYS_ONLY' },
        },
      ],
    }),
  )
}
