/**
 * Handler configuration from the Lambda environment. The shared names (PROTOCOL.md, "Limits
 * and defaults") are validated by the same `loadConfig` as every other deployment; the rest
 * are the AWS resources the CDK stack wires in.
 */
import { WsdsError } from '../core/errors.ts'
import type { Mode } from '../core/front.ts'
import { loadConfig } from '../server/config.ts'
import { parseKeySources } from './keys.ts'

export interface AwsConfig {
  /** WSDS_TABLE: the connections table. */
  tableName: string
  allowedOrigins: string[]
  /** WSDS_KEYS_FILE entries: paths, `ssm:<name>` or `secretsmanager:<id>`, current first. */
  keySources: string[]
  challengeTimeoutMs: number
  maxPayloadBytes: number
  /** WSDS_STATE_MACHINE_ARN (hello only). */
  stateMachineArn: string
  /**
   * How long a record lives without a $disconnect, ms: API Gateway ends every connection
   * after 2 hours, so a record whose $disconnect was lost is dead 2 h 5 min after $connect
   * at the latest. Nothing renews it: on AWS this is the lease (PROTOCOL.md, Revocation).
   */
  connectionTtlMs: number
  mode: Mode
  /** WSDS_POLICY_FILE bundled with the function (the authorizer applies it); null = none. */
  policyFile?: string | null
}

/** API Gateway's maximum connection duration (2 h) plus slack for $connect latency. */
export const CONNECTION_TTL_MS = 2 * 3600_000 + 5 * 60_000

/** `needs`: which optional settings this function must have (each function gets only its own). */
export function readAwsConfig(env: Record<string, string | undefined>, needs: { keys?: boolean; stateMachine?: boolean } = {}): AwsConfig {
  // WSDS_KEYS_FILE entries may be ssm:/secretsmanager: here, which loadConfig would read as paths.
  const shared = loadConfig({ ...env, WSDS_KEYS_FILE: undefined })
  const tableName = env.WSDS_TABLE ?? ''
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) throw new WsdsError('ERR_CONFIG', `WSDS_TABLE=${JSON.stringify(tableName)} is not a table name`)
  const stateMachineArn = env.WSDS_STATE_MACHINE_ARN ?? ''
  if (needs.stateMachine && !stateMachineArn.startsWith('arn:')) throw new WsdsError('ERR_CONFIG', `WSDS_STATE_MACHINE_ARN=${JSON.stringify(stateMachineArn)} is not an ARN`)
  return {
    tableName,
    allowedOrigins: shared.allowedOrigins,
    keySources: needs.keys ? parseKeySources(env.WSDS_KEYS_FILE) : [],
    challengeTimeoutMs: shared.challengeTimeoutMs,
    maxPayloadBytes: shared.maxPayloadBytes,
    stateMachineArn,
    connectionTtlMs: CONNECTION_TTL_MS,
    mode: shared.mode,
    policyFile: shared.policyFile ?? null,
  }
}
