/**
 * The protocol settings every deployment reads by the same names (PROTOCOL.md, "Limits and
 * defaults"): the standalone server (src/server/config.ts) and the Lambda handlers
 * (src/aws/config.ts) both parse them here, so one value means the same thing on both and
 * the Lambda side never loads the server's configuration (key files, ports, stores).
 *
 * Each setting is declared once, as data: variable, flag, default, parser and help line.
 * The reader, `wsds serve`'s flags and --help, and the README table are all derived from
 * those declarations (src/server/config.ts, src/server/settings-text.ts), so none of them
 * can drift from the others.
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
  /** Re-challenge interval for verified connections, ms; null = off (docs/step-up.md). */
  rechallengeMs: number | null
  /** Base proof-of-work difficulty, bits (0 = none). */
  powBits: number
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
 * How a setting's default is given:
 * - a string: the text used when the variable is unset or blank, parsed like a set value;
 * - null: the value is null (the feature is off, or there is none);
 * - `{ from }`: text computed from settings declared earlier in the same list;
 * - `{ required }`: no default; unset is an error, `${env} ${required}`.
 */
export type SettingDefault<C> = string | null | { from(prior: Readonly<C>): string | null } | { required: string }

/** One setting of a configuration `C`, stored at `C[K]`. */
export interface SettingSpec<C, K extends keyof C> {
  key: K
  /** Environment variable: the name PROTOCOL.md and the docs use. */
  env: string
  /** `wsds serve` flag overriding the variable. */
  flag: `--${string}`
  default: SettingDefault<C>
  /**
   * The default as --help and the README show it, in Markdown (backticks mark literal
   * values); needed when the default is not plain text. Unset: the default text itself.
   */
  defaultText?: string
  /** One line for --help and the README; backticks mark literal values. */
  help: string
  /** README only: the detail or link too long for a terminal line. */
  more?: string
  /**
   * `switch`: a bare `--name` means on and `--no-name` off (no value follows either);
   * `off`: `--name value`, and `--no-name` means off.
   */
  negate?: 'switch' | 'off'
  /** Throws ERR_CONFIG naming `name` and the text (see `bad`). `prior`: the settings declared before this one. */
  parse(text: string, name: string, prior: Readonly<C>): C[K]
}

/** Any one setting of `C` (a list of them is one layer's configuration). */
export type Setting<C> = { [K in keyof C]-?: SettingSpec<C, K> }[keyof C]

/** The default's text for this environment: null = the value null; throws when required. */
export function defaultFor<C>(s: Setting<C>, prior: Readonly<C>): string | null {
  const d = s.default
  if (d === null || typeof d === 'string') return d
  if ('required' in d) throw new WsdsError('ERR_CONFIG', `${s.env} ${d.required}`)
  return d.from(prior)
}

/**
 * Reads one layer's settings from the environment, in declaration order (a default may depend
 * only on the settings before it). Throws ERR_CONFIG naming the variable and the bad value.
 */
export function readSettings<C>(list: readonly Setting<C>[], env: Env): C {
  const out: Partial<Record<keyof C, unknown>> = {}
  for (const s of list) {
    const text = setting(env, s.env) ?? defaultFor(s, out as C)
    out[s.key] = text === null ? null : s.parse(text, s.env, out as C)
  }
  return out as C
}

/** Parses a whole number in [min, max]. */
export const wholeNumber = (min: number, max: number) => (text: string, name: string): number => int(name, text, min, max)

/** `off` (any case, surrounding spaces ignored) = null; anything else goes to `parse`. */
export const offOr = <T>(parse: (text: string, name: string) => T) => (text: string, name: string): T | null =>
  text.trim().toLowerCase() === 'off' ? null : parse(text, name)

/** The text as given (paths, tokens, host names: checked where they are used). */
export const asText = (text: string): string => text

/** on|off and their synonyms. */
export function onOff(text: string, name: string): boolean {
  const v = text.trim().toLowerCase()
  if (['1', 'true', 'on', 'yes'].includes(v)) return true
  if (['0', 'false', 'off', 'no'].includes(v)) return false
  return bad(name, text, 'must be on or off')
}

/** Exactly one of `values` (case and spaces count, as they always have for these names). */
export const oneOf = <T extends string>(values: readonly T[], why: string) => (text: string, name: string): T =>
  (values as readonly string[]).includes(text) ? (text as T) : bad(name, text, why)

function parseForms(text: string, name: string): ChallengeForm[] {
  const forms = [...new Set(text.split(',').map((f) => f.trim().toLowerCase()).filter((f) => f !== ''))]
  for (const f of forms) {
    if (!(CHALLENGE_FORMS as readonly string[]).includes(f)) bad(name, text, `unknown form "${f}"; the forms are ${CHALLENGE_FORMS.join(', ')}`)
  }
  if (forms.length === 0) bad(name, text, 'needs at least one form')
  return forms as ChallengeForm[]
}

function parseEngineChecks(text: string, name: string): EngineMode {
  const mode = text.trim().toLowerCase()
  if (!(ENGINE_MODES as readonly string[]).includes(mode)) bad(name, mode, 'must be off, monitor or enforce')
  return mode as EngineMode
}

type P = ProtocolSettings

/**
 * The protocol settings, in the order they are read. The standalone server places these same
 * entries in its own list (src/server/config.ts) and gives WSDS_ALLOWED_ORIGINS a default
 * from its port; the Lambda side has no port, so there the allowlist is required.
 */
export const PROTOCOL_SETTINGS: readonly Setting<P>[] = [
  {
    key: 'allowedOrigins',
    env: 'WSDS_ALLOWED_ORIGINS',
    flag: '--allowed-origins',
    default: { required: 'must name at least one origin' },
    defaultText: 'required',
    help: 'comma-separated origins (scheme, host, port) allowed to open sockets',
    parse: (text, name) => parseOrigins(name, text),
  },
  {
    key: 'corsOrigins',
    env: 'WSDS_CORS_ORIGINS',
    flag: '--cors-origins',
    default: { from: (s) => s.allowedOrigins.join(',') },
    defaultText: '`WSDS_ALLOWED_ORIGINS`',
    help: 'origins whose pages may call `/api` from another origin (preflights answered without an id), or `none`',
    parse: (text, name) => parseOrigins(name, text, true),
  },
  {
    key: 'challengeTimeoutMs',
    env: 'WSDS_CHALLENGE_TIMEOUT_MS',
    flag: '--challenge-timeout-ms',
    default: '10000',
    help: 'deadline from the upgrade to a verified answer (close 4408)',
    parse: wholeNumber(100, 600_000),
  },
  {
    key: 'maxPayloadBytes',
    env: 'WSDS_MAX_PAYLOAD_BYTES',
    flag: '--max-payload-bytes',
    default: '16384',
    help: 'largest WebSocket message (close 1009 above it)',
    parse: wholeNumber(64, 16 * 1024 * 1024),
  },
  {
    key: 'mode',
    env: 'WSDS_MODE',
    flag: '--mode',
    default: 'enforce',
    help: '`enforce`, or `monitor`: admit everything, label `X-WSDS-Verdict` and count',
    parse: oneOf<Mode>(['enforce', 'monitor'], 'must be enforce or monitor'),
  },
  {
    key: 'challengeForms',
    env: 'WSDS_CHALLENGE_FORMS',
    flag: '--challenge-forms',
    default: 'code,program',
    help: 'comma-separated challenge forms the gateway allows: `code`, `program` (runs under a strict CSP)',
    more: '([protocol](docs/protocol.md#challenge-forms-the-program-format-and-engine-checks))',
    parse: parseForms,
  },
  {
    key: 'engineChecks',
    env: 'WSDS_ENGINE_CHECKS',
    flag: '--engine-checks',
    default: 'monitor',
    help: 'HTML-parser engine checks in challenges: `off`, `monitor` (count only), `enforce`',
    parse: parseEngineChecks,
  },
  {
    key: 'policyFile',
    env: 'WSDS_POLICY_FILE',
    flag: '--policy-file',
    default: null,
    defaultText: 'none: every request needs a verified id',
    help: 'policy rules for clients that are not browsers, YAML or JSON; reloaded on `SIGHUP` and on change',
    more: '(see [docs/integrations.md](docs/integrations.md#clients-that-are-not-browsers-policy-rules))',
    parse: asText,
  },
  {
    key: 'binding',
    env: 'WSDS_BINDING',
    flag: '--binding',
    default: 'optional',
    help: 'request binding: `off` ignores it, `optional` binds pages that can, `required` refuses pages without `crypto.subtle` (`binding-required`)',
    more: '([docs/protocol.md](docs/protocol.md#request-binding-and-per-connection-quota))',
    parse: oneOf<BindingMode>(['off', 'optional', 'required'], 'must be off, optional or required'),
  },
  {
    key: 'bindingWindowMs',
    env: 'WSDS_BINDING_WINDOW_MS',
    flag: '--binding-window-ms',
    default: '30000',
    help: "how far a request signature's time may be from the gateway's clock",
    parse: wholeNumber(1000, 3_600_000),
  },
  {
    key: 'idRateLimit',
    env: 'WSDS_ID_RATE_LIMIT',
    flag: '--id-rate-limit',
    default: 'off',
    negate: 'off',
    help: 'admitted requests per second per `connectionId`, bursts of twice that, or `off`; over it 429 `{"error":"rate-limited"}` with `Retry-After` (per node in a cluster)',
    parse: offOr(wholeNumber(1, 1_000_000)),
  },
  {
    key: 'rechallengeMs',
    env: 'WSDS_RECHALLENGE_MS',
    flag: '--rechallenge-ms',
    default: 'off',
    negate: 'off',
    help: 're-challenge every verified connection at this interval, less up to 10% jitter, or `off`',
    more: '([step-up](docs/step-up.md))',
    parse: offOr(wholeNumber(1000, 86_400_000)),
  },
  {
    key: 'powBits',
    env: 'WSDS_POW_BITS',
    flag: '--pow-bits',
    default: '0',
    help: 'proof of work in every challenge, leading zero bits of SHA-256 (0 = none)',
    parse: wholeNumber(0, 32),
  },
]

/**
 * `defaultOrigins`: the allowlist when WSDS_ALLOWED_ORIGINS is unset (the server derives it
 * from its port; the Lambda side has none, so it is required there).
 */
export function readProtocolSettings(env: Env, defaultOrigins?: string): ProtocolSettings {
  const list = defaultOrigins === undefined
    ? PROTOCOL_SETTINGS
    : PROTOCOL_SETTINGS.map((s): Setting<P> => (s.key === 'allowedOrigins' ? { ...s, default: defaultOrigins } : s))
  return readSettings(list, env)
}
