/**
 * The protocol settings every deployment reads by the same names (PROTOCOL.md, "Limits and
 * defaults"): the standalone server (src/server/config.ts) and the Lambda handlers
 * (src/aws/config.ts) both parse them here, so one value means the same thing on both and
 * the Lambda side never loads the server's configuration (key files, ports, stores).
 */
import { WsdsError } from './errors.ts'
import type { Mode } from './front.ts'
import { normalizeOrigin } from './origin.ts'

export interface ProtocolSettings {
  allowedOrigins: string[]
  /** Origins whose pages may call the REST API cross-origin (WSDS_CORS_ORIGINS; default: the allowlist). */
  corsOrigins: string[]
  challengeTimeoutMs: number
  maxPayloadBytes: number
  mode: Mode
}

export type Env = Record<string, string | undefined>

export const bad = (name: string, value: string, why: string): never => {
  throw new WsdsError('ERR_CONFIG', `${name}=${JSON.stringify(value)}: ${why}`)
}

export function int(name: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value.trim())) bad(name, value, `must be a whole number in [${min}, ${max}]`)
  const n = Number(value)
  if (n < min || n > max) bad(name, value, `must be in [${min}, ${max}]`)
  return n
}

/** A set value: unset and blank both mean "use the default". */
export const setting = (env: Env, name: string): string | undefined => {
  const v = env[name]
  return v === undefined || v.trim() === '' ? undefined : v
}

/** Comma-separated origins, each normalized; `none` (CORS only) means an empty list. */
export function parseOrigins(name: string, text: string, allowNone = false): string[] {
  if (allowNone && text.trim().toLowerCase() === 'none') return []
  const origins = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => {
      try {
        return normalizeOrigin(s)
      } catch (err) {
        return bad(name, s, (err as Error).message)
      }
    })
  if (origins.length === 0) bad(name, text, allowNone ? 'needs at least one origin, or none' : 'needs at least one origin')
  return origins
}

/**
 * `defaultOrigins`: the allowlist when WSDS_ALLOWED_ORIGINS is unset (the server derives it
 * from its port; the Lambda side has none, so it is required there).
 */
export function readProtocolSettings(env: Env, defaultOrigins?: string): ProtocolSettings {
  const originsText = setting(env, 'WSDS_ALLOWED_ORIGINS') ?? defaultOrigins
  if (originsText === undefined) throw new WsdsError('ERR_CONFIG', 'WSDS_ALLOWED_ORIGINS must name at least one origin')
  const allowedOrigins = parseOrigins('WSDS_ALLOWED_ORIGINS', originsText)
  const corsText = setting(env, 'WSDS_CORS_ORIGINS')
  const corsOrigins = corsText === undefined ? allowedOrigins : parseOrigins('WSDS_CORS_ORIGINS', corsText, true)
  const mode = setting(env, 'WSDS_MODE') ?? 'enforce'
  if (mode !== 'enforce' && mode !== 'monitor') bad('WSDS_MODE', mode, 'must be enforce or monitor')
  return {
    allowedOrigins,
    corsOrigins,
    challengeTimeoutMs: int('WSDS_CHALLENGE_TIMEOUT_MS', setting(env, 'WSDS_CHALLENGE_TIMEOUT_MS') ?? '10000', 100, 600_000),
    maxPayloadBytes: int('WSDS_MAX_PAYLOAD_BYTES', setting(env, 'WSDS_MAX_PAYLOAD_BYTES') ?? '16384', 64, 16 * 1024 * 1024),
    mode: mode as Mode,
  }
}
