/**
 * The protocol settings every deployment reads by the same names (PROTOCOL.md, "Limits and
 * defaults"): the standalone server (src/server/config.ts) and the Lambda handlers
 * (src/aws/config.ts) both parse them here, so one value means the same thing on both and
 * the Lambda side never loads the server's configuration (key files, ports, stores).
 */
import type { BindingMode } from './binding.ts'
import { ENGINE_MODES, type EngineMode } from './engine-check.ts'
import { WsdsError } from './errors.ts'
import type { Mode } from './front.ts'
import { normalizeOrigin } from './origin.ts'
import { CHALLENGE_FORMS, type ChallengeForm } from './protocol.ts'

export interface ProtocolSettings {
  allowedOrigins: string[]
  /** Origins whose pages may call the REST API cross-origin (WSDS_CORS_ORIGINS; default: the allowlist). */
  corsOrigins: string[]
  challengeTimeoutMs: number
  maxPayloadBytes: number
  mode: Mode
  /** Challenge forms the gateway offers (PROTOCOL.md, "Challenge forms"). */
  challengeForms: ChallengeForm[]
  /** Engine checks in challenges (docs/protocol.md, "Engine checks"). */
  engineChecks: EngineMode
  /** Request binding (PROTOCOL.md, "Request binding"): off, optional or required. */
  binding: BindingMode
  /** How far a request signature's time may be from the gateway's clock, ms. */
  bindingWindowMs: number
  /** Admitted requests per second per connectionId (bursts of twice that); null = off. */
  idRateLimit: number | null
  /** Policy rules file (YAML or JSON, PROTOCOL.md "Policy rules"); null = none. */
  policyFile: string | null
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
  const formsText = setting(env, 'WSDS_CHALLENGE_FORMS') ?? 'code,program'
  const challengeForms = [...new Set(formsText.split(',').map((f) => f.trim().toLowerCase()).filter((f) => f !== ''))]
  for (const f of challengeForms) {
    if (!(CHALLENGE_FORMS as readonly string[]).includes(f)) bad('WSDS_CHALLENGE_FORMS', formsText, `unknown form "${f}"; the forms are ${CHALLENGE_FORMS.join(', ')}`)
  }
  if (challengeForms.length === 0) bad('WSDS_CHALLENGE_FORMS', formsText, 'needs at least one form')
  const engineChecks = (setting(env, 'WSDS_ENGINE_CHECKS') ?? 'monitor').trim().toLowerCase()
  if (!(ENGINE_MODES as readonly string[]).includes(engineChecks)) bad('WSDS_ENGINE_CHECKS', engineChecks, 'must be off, monitor or enforce')
  const binding = setting(env, 'WSDS_BINDING') ?? 'optional'
  if (binding !== 'off' && binding !== 'optional' && binding !== 'required') bad('WSDS_BINDING', binding, 'must be off, optional or required')
  const idRateText = setting(env, 'WSDS_ID_RATE_LIMIT') ?? 'off'
  const idRateLimit = idRateText.trim().toLowerCase() === 'off' ? null : int('WSDS_ID_RATE_LIMIT', idRateText, 1, 1_000_000)
  return {
    challengeForms: challengeForms as ChallengeForm[],
    engineChecks: engineChecks as EngineMode,
    binding: binding as BindingMode,
    bindingWindowMs: int('WSDS_BINDING_WINDOW_MS', setting(env, 'WSDS_BINDING_WINDOW_MS') ?? '30000', 1000, 3_600_000),
    idRateLimit,
    policyFile: setting(env, 'WSDS_POLICY_FILE') ?? null,
    allowedOrigins,
    corsOrigins,
    challengeTimeoutMs: int('WSDS_CHALLENGE_TIMEOUT_MS', setting(env, 'WSDS_CHALLENGE_TIMEOUT_MS') ?? '10000', 100, 600_000),
    maxPayloadBytes: int('WSDS_MAX_PAYLOAD_BYTES', setting(env, 'WSDS_MAX_PAYLOAD_BYTES') ?? '16384', 64, 16 * 1024 * 1024),
    mode: mode as Mode,
  }
}
