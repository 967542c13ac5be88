/**
 * Lambda entry: the re-challenge sweeper, run every minute by EventBridge (src/aws/sweeper.ts),
 * and the operator's re-challenge when invoked with `{"op":"rechallenge",...}`.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { depsFromEnv } from '../deps.ts'
import { createSweeper, type OperatorRechallenge } from '../sweeper.ts'

const sweeper = createSweeper(depsFromEnv(process.env, { keys: true, connections: true }), { dynamo: new DynamoDBClient({}) })
export const handler = (event: Partial<OperatorRechallenge> | null) =>
  event?.op === 'rechallenge' ? sweeper.rechallenge(event as OperatorRechallenge) : sweeper.run()
