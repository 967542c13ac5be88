/**
 * What every handler is built from. The Lambda entry points build it from the environment
 * (`depsFromEnv`); the local emulation and the tests build it with the same real SDK clients
 * pointed at local endpoints.
 */
import { ApiGatewayManagementApiClient } from '@aws-sdk/client-apigatewaymanagementapi'
import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { SFNClient } from '@aws-sdk/client-sfn'
import { SSMClient } from '@aws-sdk/client-ssm'
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager'
import { WsdsError } from '../core/errors.ts'
import type { KeyRing } from '../core/keyring.ts'
import { createRandomPool, type RandomSource } from '../core/random.ts'
import type { Store } from '../core/store.ts'
import { createDynamoDbStore } from '../stores/dynamodb.ts'
import { readAwsConfig, type AwsConfig } from './config.ts'
import { createConnections, type Connections } from './connections.ts'
import { lazyKeyRing, loadKeySets } from './keys.ts'
import { createConnectionsTable, type ConnectionsTable } from './table.ts'

export interface AwsDeps {
  config: AwsConfig
  /** The DynamoDB store, for the record itself (put at $connect, read by the authorizer). */
  store: Store
  /** The handshake's extra attributes on the same items. */
  table: ConnectionsTable
  connections: Connections
  sfn: SFNClient
  keyRing: () => Promise<KeyRing>
  random: RandomSource
  now: () => number
  /** SSM, created on first use (WSDS_POLICY_FILE=ssm:<name>); absent where no SSM is reachable. */
  ssm?: () => SSMClient
  /** One JSON line per outcome, for CloudWatch (default: console.log). */
  log: (event: Record<string, unknown>) => void
}

export interface DepsFromEnvOptions {
  keys?: boolean
  stateMachine?: boolean
  connections?: boolean
}

/** Builds deps for one Lambda function from its environment; clients are reused across invocations. */
export function depsFromEnv(env: Record<string, string | undefined>, needs: DepsFromEnvOptions = {}): AwsDeps {
  const config = readAwsConfig(env, needs)
  const dynamo = new DynamoDBClient({})
  const connectionsUrl = env.WSDS_CONNECTIONS_URL ?? ''
  if (needs.connections && !/^https?:\/\//.test(connectionsUrl)) {
    throw new WsdsError('ERR_CONFIG', `WSDS_CONNECTIONS_URL=${JSON.stringify(connectionsUrl)} must be the stage's callback URL`)
  }
  let ssm: SSMClient | undefined
  let secrets: SecretsManagerClient | undefined
  return {
    config,
    store: createDynamoDbStore({ client: dynamo, tableName: config.tableName }),
    table: createConnectionsTable(dynamo, config.tableName),
    connections: createConnections(new ApiGatewayManagementApiClient({ endpoint: connectionsUrl || 'http://unset.invalid' })),
    sfn: new SFNClient({}),
    keyRing: lazyKeyRing(() =>
      loadKeySets(config.keySources, { ssm: () => (ssm ??= new SSMClient({})), secretsManager: () => (secrets ??= new SecretsManagerClient({})) }),
    ),
    ssm: () => (ssm ??= new SSMClient({})),
    random: createRandomPool(),
    now: Date.now,
    log: (event) => console.log(JSON.stringify(event)),
  }
}
