/**
 * The connections table on AWS. Each item is a connection record as the DynamoDB store writes
 * it (`recordToItem`: connectionId, status, origin, createdAt, expiresAt, ttl, verifiedAt),
 * so the authorizer reads it through the same store and the same decision as self-hosted.
 * The handshake's own state rides on the same item as extra attributes, which the store
 * ignores when it reads a record:
 *
 * | attribute | set by | meaning |
 * | --- | --- | --- |
 * | `helloSeen` (BOOL) | hello | a second hello is a bad message |
 * | `keySetId` (S) | hello | the key set the page named (resolved) |
 * | `challengeToken` (S) | issue-challenge | the outstanding challenge's token |
 * | `challengeExpected` (S) | issue-challenge | what the answer must equal; never leaves AWS |
 * | `taskToken` (S) | issue-challenge | the Step Functions task waiting for the answer |
 * | `deadlineAt` (N) | issue-challenge | epoch ms after which an answer is `timeout` |
 *
 * One item per connection keeps every step a single conditional write: no transactions
 * (which dynalite lacks), and a deleted connection can never be resurrected by a late
 * write, since every update is conditioned on the item existing.
 */
import {
  ConditionalCheckFailedException,
  DeleteItemCommand,
  UpdateItemCommand,
  type AttributeValue,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb'

export interface ConnectionItem {
  connectionId: string
  origin: string
  status: string
  keySetId?: string
  challengeToken?: string
  challengeExpected?: string
  taskToken?: string
  deadlineAt?: number
}

export interface SpentChallenge {
  expected: string
  taskToken: string
  deadlineAt: number
}

function toConnectionItem(item: Record<string, AttributeValue> | undefined): ConnectionItem | null {
  if (item === undefined || item.connectionId?.S === undefined) return null
  const out: ConnectionItem = { connectionId: item.connectionId.S, origin: item.origin?.S ?? '', status: item.status?.S ?? '' }
  if (item.keySetId?.S !== undefined) out.keySetId = item.keySetId.S
  if (item.challengeToken?.S !== undefined) out.challengeToken = item.challengeToken.S
  if (item.challengeExpected?.S !== undefined) out.challengeExpected = item.challengeExpected.S
  if (item.taskToken?.S !== undefined) out.taskToken = item.taskToken.S
  if (item.deadlineAt?.N !== undefined) out.deadlineAt = Number(item.deadlineAt.N)
  return out
}

const conditionFailed = (err: unknown) =>
  err instanceof ConditionalCheckFailedException || (err as Error | null)?.name === 'ConditionalCheckFailedException'

export interface ConnectionsTable {
  /** Records the first hello; null when there was one already (or the item is gone). */
  markHello(connectionId: string, keySetId: string): Promise<ConnectionItem | null>
  /** Stores the outstanding challenge; false when the connection is gone. */
  storeChallenge(connectionId: string, c: { token: string; expected: string; taskToken: string; deadlineAt: number }): Promise<boolean>
  /**
   * Spends the outstanding challenge if `token` is it: one conditional write, so of two
   * answers racing with the same token exactly one gets the challenge. Null = bad token.
   */
  spendChallenge(connectionId: string, token: string): Promise<SpentChallenge | null>
  /** Marks the record verified; false when the connection is gone. */
  markVerified(connectionId: string, now: number): Promise<boolean>
  /** Deletes the item; returns what it held (the task token, if a challenge was outstanding). */
  remove(connectionId: string): Promise<ConnectionItem | null>
}

export function createConnectionsTable(client: DynamoDBClient, tableName: string): ConnectionsTable {
  const key = (id: string) => ({ connectionId: { S: id } })
  const update = async (input: Omit<ConstructorParameters<typeof UpdateItemCommand>[0], 'TableName'>) => {
    try {
      return await client.send(new UpdateItemCommand({ TableName: tableName, ...input }))
    } catch (err) {
      if (conditionFailed(err)) return null
      throw err
    }
  }
  return {
    async markHello(id, keySetId) {
      const out = await update({
        Key: key(id),
        UpdateExpression: 'SET helloSeen = :t, keySetId = :k',
        ConditionExpression: 'attribute_exists(connectionId) AND attribute_not_exists(helloSeen)',
        ExpressionAttributeValues: { ':t': { BOOL: true }, ':k': { S: keySetId } },
        ReturnValues: 'ALL_NEW',
      })
      return out === null ? null : toConnectionItem(out.Attributes)
    },
    async storeChallenge(id, c) {
      const out = await update({
        Key: key(id),
        UpdateExpression: 'SET challengeToken = :c, challengeExpected = :e, taskToken = :k, deadlineAt = :d',
        ConditionExpression: 'attribute_exists(connectionId)',
        ExpressionAttributeValues: { ':c': { S: c.token }, ':e': { S: c.expected }, ':k': { S: c.taskToken }, ':d': { N: String(c.deadlineAt) } },
      })
      return out !== null
    },
    async spendChallenge(id, token) {
      const out = await update({
        Key: key(id),
        UpdateExpression: 'REMOVE challengeToken, challengeExpected, taskToken, deadlineAt',
        ConditionExpression: 'challengeToken = :c',
        ExpressionAttributeValues: { ':c': { S: token } },
        ReturnValues: 'ALL_OLD',
      })
      const item = out === null ? null : toConnectionItem(out.Attributes)
      if (item?.challengeExpected === undefined || item.taskToken === undefined || item.deadlineAt === undefined) return null
      return { expected: item.challengeExpected, taskToken: item.taskToken, deadlineAt: item.deadlineAt }
    },
    async markVerified(id, now) {
      const out = await update({
        Key: key(id),
        UpdateExpression: 'SET #s = :v, verifiedAt = :n',
        ConditionExpression: 'attribute_exists(connectionId)',
        ExpressionAttributeNames: { '#s': 'status' },
        ExpressionAttributeValues: { ':v': { S: 'verified' }, ':n': { N: String(now) } },
      })
      return out !== null
    },
    async remove(id) {
      const out = await client.send(new DeleteItemCommand({ TableName: tableName, Key: key(id), ReturnValues: 'ALL_OLD' }))
      return toConnectionItem(out.Attributes)
    },
  }
}
