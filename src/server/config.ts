/**
 * Configuration for every way to start WSDS, by the names PROTOCOL.md fixes ("Limits and
 * defaults"): environment variables, each overridable by a CLI flag. Everything is
 * validated here, once, with a message naming the variable and the bad value.
 */
import { readFileSync } from 'node:fs'
import { WsdsError } from '../core/errors.ts'
import { parseKeySet, type KeySet } from '../core/keyset.ts'
import type { BindingMode } from '../core/binding.ts'
import type { Mode } from '../core/front.ts'
import type { EngineMode } from '../core/engine-check.ts'
import type { ChallengeForm } from '../core/protocol.ts'
import type { StoreOutagePolicy } from '../core/authenticator.ts'
import { parseRedisStoreUrl, redact } from '../stores/redis-url.ts'
import { readProtocolSettings } from '../core/settings.ts'

export interface ServerConfig {
  port: number
  host: string
  allowedOrigins: string[]
  /** Origins whose pages may call /api cross-origin (WSDS_CORS_ORIGINS; default: allowedOrigins). */
  corsOrigins: string[]
  /** Key sets from WSDS_KEYS_FILE, current first; empty = generate an ephemeral set. */
  keySets: KeySet[]
  challengeTimeoutMs: number
  authCacheTtlMs: number
  /** Upgrades per second per client address; null = off. */
  rateLimit: number | null
  /** 'memory', a redis://, rediss://, redis-sentinel:// or redis-cluster:// URL, or a dynamodb:// URL. */
  store: string
  storePrefix: string
  /** What the authenticator does for a cached id while the store is unreachable (docs/cluster.md). */
  storeOutage: StoreOutagePolicy
  leaseMs: number
  /** URL of the protected service; null = the built-in demo greeting service. */
  upstream: string | null
  demo: boolean
  maxPayloadBytes: number
  trustProxy: boolean
  metricsToken: string | null
  metricsPath: string
  /** A port of its own for metrics; null = the gateway's port. */
  metricsPort: number | null
  logLevel: string
  mode: Mode
  /** Path of the forward auth endpoint (204 / 401 / 503). */
  authPath: string
  /** A Unix domain socket to listen on as well as the TCP port; null = none. */
  socketPath: string | null
  /** Permissions of that socket file (connecting needs write permission). */
  socketMode: number
  /** Challenge forms the gateway offers (PROTOCOL.md, "Challenge forms"). */
  challengeForms: ChallengeForm[]
  /** Engine checks in challenges (docs/protocol.md, "Engine checks"). */
  engineChecks: EngineMode
  /** Re-challenge interval for verified connections, ms; null = off (docs/protocol.md, "Step-up"). */
  rechallengeMs: number | null
  /** Base proof-of-work difficulty, bits (0 = none). */
  powBits: number
  /** Cap of proof-of-work escalation, bits; at most powBits = no escalation. */
  powMaxBits: number
  /** Bearer token of the operations endpoint; null = endpoint off. */
  adminToken: string | null
  /** Request binding (PROTOCOL.md, "Request binding"): off, optional or required. */
  binding: BindingMode
  /** How far a request signature's time may be from the gateway's clock, ms. */
  bindingWindowMs: number
  /** Admitted requests per second per connectionId (bursts of twice that); null = off. */
  idRateLimit: number | null
  /** Policy rules file (YAML or JSON, PROTOCOL.md "Policy rules"); null or absent = none. */
  policyFile?: string | null
}

interface Setting {
  env: string
  flag: string
  help: string
}

export const SETTINGS: readonly Setting[] = [
  { env: 'PORT', flag: '--port', help: 'TCP port (default 8080)' },
  { env: 'HOST', flag: '--host', help: 'listen address (default 127.0.0.1)' },
  { env: 'WSDS_ALLOWED_ORIGINS', flag: '--allowed-origins', help: 'comma-separated origins (default http://localhost:PORT,http://127.0.0.1:PORT)' },
  { env: 'WSDS_CORS_ORIGINS', flag: '--cors-origins', help: 'origins whose pages may call /api cross-origin, or none (default: WSDS_ALLOWED_ORIGINS)' },
  { env: 'WSDS_KEYS_FILE', flag: '--keys-file', help: 'comma-separated key set files, current first (default: ephemeral set)' },
  { env: 'WSDS_CHALLENGE_TIMEOUT_MS', flag: '--challenge-timeout-ms', help: 'challenge deadline from the upgrade (default 10000)' },
  { env: 'WSDS_AUTH_CACHE_TTL_MS', flag: '--auth-cache-ttl-ms', help: 'authenticator positive cache TTL, 0 = off (default 300000; 5000 with dynamodb)' },
  { env: 'WSDS_RATE_LIMIT', flag: '--rate-limit', help: 'upgrades per second per address (burst 2x), or off (default 200)' },
  {
    env: 'WSDS_STORE',
    flag: '--store',
    help: 'memory (default), redis://host:port/db, redis-sentinel://h1:p1,h2:p2/<master-name>, redis-cluster://h1:p1,h2:p2, or dynamodb://table?region=&endpoint=',
  },
  {
    env: 'WSDS_STORE_OUTAGE',
    flag: '--store-outage',
    help: 'while the store is unreachable: closed (default; 503 for every id not in the cache) or cached (ids admitted before the outage stay admitted from the cache, at most the cache TTL)',
  },
  { env: 'WSDS_STORE_PREFIX', flag: '--store-prefix', help: 'Redis key prefix, so deployments can share a Redis (default wsds:)' },
  { env: 'WSDS_LEASE_MS', flag: '--lease-ms', help: 'record lease renewed by the owning node (default 30000)' },
  { env: 'WSDS_UPSTREAM', flag: '--upstream', help: 'protected service URL for /api/* (default: demo greeting service)' },
  { env: 'WSDS_DEMO', flag: '--demo', help: 'serve the demo page at / with a key set of its own (on|off, default on without WSDS_KEYS_FILE, off with it)' },
  { env: 'WSDS_MAX_PAYLOAD_BYTES', flag: '--max-payload-bytes', help: 'largest WebSocket message (default 16384)' },
  { env: 'WSDS_TRUST_PROXY', flag: '--trust-proxy', help: 'believe X-Forwarded-For (on|off, default off)' },
  { env: 'WSDS_METRICS_PATH', flag: '--metrics-path', help: 'path of the Prometheus endpoint (default /metrics)' },
  { env: 'WSDS_METRICS_PORT', flag: '--metrics-port', help: 'serve metrics on this port instead of the gateway port (default: same port)' },
  { env: 'WSDS_METRICS_TOKEN', flag: '--metrics-token', help: 'bearer token required by /metrics (default: none)' },
  { env: 'WSDS_AUTH_PATH', flag: '--auth-path', help: 'forward auth endpoint path (default /wsds/auth)' },
  { env: 'WSDS_MODE', flag: '--mode', help: 'enforce (default) or monitor: admit all, label X-WSDS-Verdict, count' },
  { env: 'WSDS_SOCKET', flag: '--socket', help: 'also listen on this Unix socket path, for a proxy on the same host (default: none)' },
  { env: 'WSDS_SOCKET_MODE', flag: '--socket-mode', help: 'octal permissions of that socket; connecting needs write (default 660)' },
  { env: 'WSDS_CHALLENGE_FORMS', flag: '--challenge-forms', help: 'comma-separated challenge forms to allow: code, program (default code,program)' },
  { env: 'WSDS_ENGINE_CHECKS', flag: '--engine-checks', help: 'HTML-parser engine checks in challenges: off|monitor|enforce (default monitor)' },
  { env: 'WSDS_POLICY_FILE', flag: '--policy-file', help: 'policy rules, YAML or JSON; reloaded on SIGHUP and on change (default: none, all verify)' },
  { env: 'WSDS_LOG_LEVEL', flag: '--log-level', help: 'debug|info|warn|error|silent (default info)' },
  { env: 'WSDS_RECHALLENGE_MS', flag: '--rechallenge-ms', help: 're-challenge verified connections at this interval, jitter 10%, or off (default off)' },
  { env: 'WSDS_POW_BITS', flag: '--pow-bits', help: 'proof-of-work difficulty of every challenge, bits, 0 = off (default 0)' },
  { env: 'WSDS_POW_MAX_BITS', flag: '--pow-max-bits', help: 'cap of proof-of-work escalation per address and under load (default 20 when WSDS_POW_BITS > 0, else 0 = no escalation)' },
  { env: 'WSDS_ADMIN_TOKEN', flag: '--admin-token', help: 'bearer token of POST /wsds/admin/rechallenge, at least 16 chars; prefer the environment (default: endpoint off)' },
  { env: 'WSDS_BINDING', flag: '--binding', help: 'request binding: off, optional (default) or required (unbound hellos refused)' },
  { env: 'WSDS_BINDING_WINDOW_MS', flag: '--binding-window-ms', help: 'how far a request signature time may be from now (default 30000)' },
  { env: 'WSDS_ID_RATE_LIMIT', flag: '--id-rate-limit', help: 'admitted requests per second per connectionId (burst 2x), or off (default off)' },
]

const bad = (name: string, value: string, why: string): never => {
  throw new WsdsError('ERR_CONFIG', `${name}=${JSON.stringify(value)}: ${why}`)
}

function int(name: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value.trim())) bad(name, value, `must be a whole number in [${min}, ${max}]`)
  const n = Number(value)
  if (n < min || n > max) bad(name, value, `must be in [${min}, ${max}]`)
  return n
}

function bool(name: string, value: string): boolean {
  const v = value.trim().toLowerCase()
  if (['1', 'true', 'on', 'yes'].includes(v)) return true
  if (['0', 'false', 'off', 'no'].includes(v)) return false
  return bad(name, value, 'must be on or off')
}

/** Parses `--name value` / `--name=value` / `--no-name` flags into env-named values. */
export function flagsToEnv(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {}
  const byFlag = new Map(SETTINGS.map((s) => [s.flag, s.env]))
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const eq = arg.indexOf('=')
    let flag = eq === -1 ? arg : arg.slice(0, eq)
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1)
    if (value === undefined && flag.startsWith('--no-') && byFlag.has('--' + flag.slice(5))) {
      flag = '--' + flag.slice(5)
      value = 'off'
    }
    const env = byFlag.get(flag)
    if (env === undefined) throw new WsdsError('ERR_CONFIG', `unknown option ${flag} (see wsds serve --help)`)
    if (value !== undefined && value.trim() === '') throw new WsdsError('ERR_CONFIG', `option ${flag} needs a value (${env})`)
    if (value === undefined) {
      const next = argv[i + 1]
      if (next === undefined || next.startsWith('--')) {
        if (flag === '--demo' || flag === '--trust-proxy') value = 'on'
        else throw new WsdsError('ERR_CONFIG', `option ${flag} needs a value`)
      } else {
        value = next
        i++
      }
    }
    out[env] = value
  }
  return out
}

export function loadKeySetFile(path: string): KeySet {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (cause) {
    throw new WsdsError('ERR_CONFIG', `WSDS_KEYS_FILE: cannot read ${path}: ${(cause as Error).message}`, { cause })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (cause) {
    throw new WsdsError('ERR_CONFIG', `WSDS_KEYS_FILE: ${path} is not JSON`, { cause })
  }
  return parseKeySet(json, path)
}

/** Reads the configuration from the environment with flags on top. Throws ERR_CONFIG. */
export function loadConfig(env: Record<string, string | undefined>, argv: readonly string[] = []): ServerConfig {
  const e: Record<string, string | undefined> = { ...env, ...flagsToEnv(argv) }
  const get = (name: string): string | undefined => {
    const v = e[name]
    return v === undefined || v.trim() === '' ? undefined : v
  }
  const port = get('PORT') === undefined ? 8080 : int('PORT', get('PORT')!, 0, 65535)
  const host = get('HOST') ?? '127.0.0.1'
  // The names both deployments read (src/core/settings.ts): parsed there, once.
  const protocol = readProtocolSettings(e, `http://localhost:${port},http://127.0.0.1:${port}`)
  const keyFiles = (get('WSDS_KEYS_FILE') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  const keySets = keyFiles.map(loadKeySetFile)
  const ids = new Set<string>()
  for (const ks of keySets) {
    if (ids.has(ks.id)) bad('WSDS_KEYS_FILE', keyFiles.join(','), `key set id "${ks.id}" appears twice`)
    ids.add(ks.id)
  }
  const rateText = get('WSDS_RATE_LIMIT') ?? '200'
  const rateLimit = rateText.trim().toLowerCase() === 'off' ? null : int('WSDS_RATE_LIMIT', rateText, 1, 1_000_000)
  const storeText = get('WSDS_STORE') ?? 'memory'
  const store = storeText === 'memory://' ? 'memory' : storeText
  if (store !== 'memory' && !/^(rediss?|redis-sentinel|redis-cluster|dynamodb):\/\/./.test(store)) {
    bad('WSDS_STORE', store, 'must be memory, redis://host:port/db, rediss://..., redis-sentinel://h1:p1,h2:p2/<master-name>, redis-cluster://h1:p1,h2:p2, or dynamodb://table?region=...')
  }
  if (/^redis-(sentinel|cluster):/.test(store)) {
    try {
      parseRedisStoreUrl(store)
    } catch (err) {
      bad('WSDS_STORE', redact(store), (err as Error).message.replace(/^WSDS_STORE="[^"]*": /, ''))
    }
  }
  const storeOutage = get('WSDS_STORE_OUTAGE') ?? 'closed'
  if (storeOutage !== 'closed' && storeOutage !== 'cached') bad('WSDS_STORE_OUTAGE', storeOutage, 'must be closed or cached')
  const storePrefix = get('WSDS_STORE_PREFIX') ?? 'wsds:'
  if (!/^[A-Za-z0-9:_.{}-]{1,64}$/.test(storePrefix)) bad('WSDS_STORE_PREFIX', storePrefix, 'must be 1-64 of [A-Za-z0-9:_.{}-]')
  // DynamoDB cannot push deletions to other nodes: there the cache TTL is the revocation
  // bound, so its default favours revocation over read cost.
  const defaultCacheTtl = store.startsWith('dynamodb:') ? '5000' : '300000'
  const upstream = get('WSDS_UPSTREAM') ?? null
  if (upstream !== null) {
    let url: URL | undefined
    try {
      url = new URL(upstream)
    } catch {
      bad('WSDS_UPSTREAM', upstream, 'must be an http(s) URL')
    }
    if (url && url.protocol !== 'http:' && url.protocol !== 'https:') bad('WSDS_UPSTREAM', upstream, 'must be an http(s) URL')
  }
  const logLevel = get('WSDS_LOG_LEVEL') ?? 'info'
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel)) {
    bad('WSDS_LOG_LEVEL', logLevel, 'must be debug, info, warn, error or silent')
  }
  const metricsPath = get('WSDS_METRICS_PATH') ?? '/metrics'
  if (!/^\/[A-Za-z0-9._~\/-]+$/.test(metricsPath)) bad('WSDS_METRICS_PATH', metricsPath, 'must be a path like /metrics')
  const metricsPortText = get('WSDS_METRICS_PORT')
  const metricsPort = metricsPortText === undefined ? null : int('WSDS_METRICS_PORT', metricsPortText, 0, 65535)
  const authPath = get('WSDS_AUTH_PATH') ?? '/wsds/auth'
  if (!/^\/[A-Za-z0-9._~\/-]*$/.test(authPath) || authPath === '/wsds' || authPath === '/api' || authPath.startsWith('/api/') || authPath === '/') {
    bad('WSDS_AUTH_PATH', authPath, 'must be a path like /wsds/auth, outside /api and not / or /wsds')
  }
  const socketPath = get('WSDS_SOCKET') ?? null
  // sun_path holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
  if (socketPath !== null && (!socketPath.startsWith('/') || Buffer.byteLength(socketPath) > 100)) {
    bad('WSDS_SOCKET', socketPath, 'must be an absolute path of at most 100 bytes')
  }
  const socketModeText = get('WSDS_SOCKET_MODE') ?? '660'
  if (!/^0?[0-7]{3}$/.test(socketModeText.trim())) bad('WSDS_SOCKET_MODE', socketModeText, 'must be octal permissions like 660')
  const rechallengeText = get('WSDS_RECHALLENGE_MS') ?? 'off'
  const rechallengeMs = rechallengeText.trim().toLowerCase() === 'off' ? null : int('WSDS_RECHALLENGE_MS', rechallengeText, 1000, 86_400_000)
  const powBits = int('WSDS_POW_BITS', get('WSDS_POW_BITS') ?? '0', 0, 32)
  const powMaxText = get('WSDS_POW_MAX_BITS')
  const powMaxBits = powMaxText === undefined ? (powBits > 0 ? Math.max(powBits, 20) : 0) : int('WSDS_POW_MAX_BITS', powMaxText, 0, 32)
  if (powMaxText !== undefined && powMaxBits < powBits) bad('WSDS_POW_MAX_BITS', powMaxText, `must be at least WSDS_POW_BITS (${powBits})`)
  const adminToken = get('WSDS_ADMIN_TOKEN') ?? null
  if (adminToken !== null && !/^[\x21-\x7e]{16,512}$/.test(adminToken)) {
    throw new WsdsError('ERR_CONFIG', 'WSDS_ADMIN_TOKEN: must be 16-512 printable characters without spaces (value not shown)')
  }
  return {
    challengeForms: protocol.challengeForms,
    engineChecks: protocol.engineChecks,
    rechallengeMs,
    powBits,
    powMaxBits,
    adminToken,
    binding: protocol.binding,
    bindingWindowMs: protocol.bindingWindowMs,
    idRateLimit: protocol.idRateLimit,
    authPath,
    socketPath,
    socketMode: parseInt(socketModeText.trim(), 8),
    mode: protocol.mode,
    port,
    host,
    allowedOrigins: protocol.allowedOrigins,
    corsOrigins: protocol.corsOrigins,
    keySets,
    challengeTimeoutMs: protocol.challengeTimeoutMs,
    authCacheTtlMs: int('WSDS_AUTH_CACHE_TTL_MS', get('WSDS_AUTH_CACHE_TTL_MS') ?? defaultCacheTtl, 0, 86_400_000),
    rateLimit,
    store,
    storePrefix,
    storeOutage: storeOutage as StoreOutagePolicy,
    leaseMs: int('WSDS_LEASE_MS', get('WSDS_LEASE_MS') ?? '30000', 100, 86_400_000),
    upstream,
    // The demo hands its key set to anyone: with real keys loaded it is off unless asked for,
    // and even then it never serves those (src/server/server.ts gives it a set of its own).
    demo: bool('WSDS_DEMO', get('WSDS_DEMO') ?? (keySets.length === 0 ? 'on' : 'off')),
    maxPayloadBytes: protocol.maxPayloadBytes,
    trustProxy: bool('WSDS_TRUST_PROXY', get('WSDS_TRUST_PROXY') ?? 'off'),
    metricsToken: get('WSDS_METRICS_TOKEN') ?? null,
    metricsPath,
    metricsPort,
    logLevel,
    policyFile: protocol.policyFile,
  }
}
