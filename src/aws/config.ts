/**
 * Handler configuration from the Lambda environment. The protocol names (PROTOCOL.md, "Limits
 * and defaults") are parsed by core (src/core/settings.ts), as the standalone server parses
 * them; the rest are the AWS resources the CDK stack wires in. The server's own loadConfig
 * (ports, key files, stores) is not loaded here.
 */
import { WsdsError } from '../core/errors.ts'
import type { Mode } from '../core/front.ts'
import { int, readProtocolSettings, setting, type Env, type ProtocolSettings } from '../core/settings.ts'
import { parseKeySources } from './keys.ts'

export interface AwsConfig {
  /** WSDS_TABLE: the connections table. */
  tableName: string
  allowedOrigins: string[]
  /** WSDS_CORS_ORIGINS (default: the allowlist): origins the REST API answers CORS for. */
  corsOrigins: string[]
  /** WSDS_KEYS_FILE entries: paths, `ssm:<name>` or `secretsmanager:<id>`, current first. */
  keySources: string[]
  challengeTimeoutMs: number
  maxPayloadBytes: number
  /** WSDS_STATE_MACHINE_ARN (the message function only). */
  stateMachineArn: string
  /**
   * How long a record lives without a $disconnect, ms: API Gateway ends every connection
   * after 2 hours. A lost $disconnect is caught sooner by the authorizer's liveness check
   * (src/aws/rest.ts); this lease is the backstop (PROTOCOL.md, Revocation).
   */
  connectionTtlMs: number
  mode: Mode
  /** WSDS_CHALLENGE_FORMS, WSDS_ENGINE_CHECKS and WSDS_BINDING, as the self-hosted gateway reads them. */
  challengeForms: ProtocolSettings['challengeForms']
  engineChecks: ProtocolSettings['engineChecks']
  binding: ProtocolSettings['binding']
  /** WSDS_POLICY_FILE bundled with the function (the authorizer applies it); null = none. */
  policyFile?: string | null
  /**
   * WSDS_RECHALLENGE_MS (default off = null): the sweeper re-challenges verified connections
   * at this interval (src/aws/sweeper.ts). Read by the message, timer and sweeper functions.
   */
  rechallengeMs?: number | null
  /** WSDS_POW_BITS (default 0): proof of work in every challenge the handlers issue. */
  powBits?: number
}

/** API Gateway's maximum connection duration (2 h) plus slack for $connect latency. */
export const CONNECTION_TTL_MS = 2 * 3600_000 + 5 * 60_000

/** `needs`: which optional settings this function must have (each function gets only its own). */
export function readAwsConfig(env: Env, needs: { keys?: boolean; stateMachine?: boolean } = {}): AwsConfig {
  const shared = readProtocolSettings(env)
  const tableName = env.WSDS_TABLE ?? ''
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(tableName)) throw new WsdsError('ERR_CONFIG', `WSDS_TABLE=${JSON.stringify(tableName)} is not a table name`)
  const stateMachineArn = env.WSDS_STATE_MACHINE_ARN ?? ''
  if (needs.stateMachine && !stateMachineArn.startsWith('arn:')) throw new WsdsError('ERR_CONFIG', `WSDS_STATE_MACHINE_ARN=${JSON.stringify(stateMachineArn)} is not an ARN`)
  return {
    tableName,
    allowedOrigins: shared.allowedOrigins,
    corsOrigins: shared.corsOrigins,
    keySources: needs.keys ? parseKeySources(env.WSDS_KEYS_FILE) : [],
    challengeTimeoutMs: shared.challengeTimeoutMs,
    maxPayloadBytes: shared.maxPayloadBytes,
    stateMachineArn,
    connectionTtlMs: CONNECTION_TTL_MS,
    mode: shared.mode,
    challengeForms: shared.challengeForms,
    engineChecks: shared.engineChecks,
    binding: shared.binding,
    policyFile: shared.policyFile ?? null,
    rechallengeMs: shared.rechallengeMs,
    powBits: shared.powBits,
  }
}

