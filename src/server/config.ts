/**
 * Configuration for every way to start WSDS, by the names PROTOCOL.md fixes ("Limits and
 * defaults"): environment variables, each overridable by a CLI flag. Each setting is declared
 * once below (SETTINGS: variable, flag, default, parser, help line); reading, flags, --help
 * and the README table are derived from it. Every value is validated here, once, with a
 * message naming the variable and the bad value.
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
import { PROTOCOL_SETTINGS, asText, bad, int, offOr, oneOf, onOff, readSettings, wholeNumber, type ProtocolSettings, type Setting } from '../core/settings.ts'
import { parseFlags } from './flags.ts'

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

type C = ServerConfig

/** Compiles only while ServerConfig holds every protocol setting under its name and type. */
type IsTrue<T extends true> = T
type ProtocolFits = IsTrue<ProtocolSettings extends Pick<ServerConfig, keyof ProtocolSettings> ? true : false>

/**
 * The protocol entries by key, so this list can place each where it reads best. The cast is
 * sound while ProtocolFits compiles: an entry reading ProtocolSettings reads the same fields of
 * a ServerConfig.
 */
const protocol = Object.fromEntries(PROTOCOL_SETTINGS.map((s) => [s.key, s])) as { [K in keyof ProtocolSettings]: Setting<C> }

function parseKeySets(text: string, name: string): KeySet[] {
  const files = text.split(',').map((s) => s.trim()).filter((s) => s !== '')
  const keySets = files.map(loadKeySetFile)
  const ids = new Set<string>()
  for (const ks of keySets) {
    if (ids.has(ks.id)) bad(name, files.join(','), `key set id "${ks.id}" appears twice`)
    ids.add(ks.id)
  }
  return keySets
}

function parseStore(text: string, name: string): string {
  const store = text === 'memory://' ? 'memory' : text
  if (store !== 'memory' && !/^(rediss?|redis-sentinel|redis-cluster|dynamodb):\/\/./.test(store)) {
    bad(name, store, 'must be memory, redis://host:port/db, rediss://..., redis-sentinel://h1:p1,h2:p2/<master-name>, redis-cluster://h1:p1,h2:p2, or dynamodb://table?region=...')
  }
  if (/^redis-(sentinel|cluster):/.test(store)) {
    try {
      parseRedisStoreUrl(store)
    } catch (err) {
      bad(name, redact(store), (err as Error).message.replace(/^WSDS_STORE="[^"]*": /, ''))
    }
  }
  return store
}

function parseUpstream(text: string, name: string): string {
  let url: URL | undefined
  try {
    url = new URL(text)
  } catch {
    bad(name, text, 'must be an http(s) URL')
  }
  if (url && url.protocol !== 'http:' && url.protocol !== 'https:') bad(name, text, 'must be an http(s) URL')
  return text
}

/** A value matching `pattern`, or ERR_CONFIG with `why`. */
const matching = (pattern: RegExp, why: string) => (text: string, name: string): string => (pattern.test(text) ? text : bad(name, text, why))

function parseAuthPath(text: string, name: string): string {
  if (!/^\/[A-Za-z0-9._~\/-]*$/.test(text) || text === '/wsds' || text === '/api' || text.startsWith('/api/') || text === '/') {
    bad(name, text, 'must be a path like /wsds/auth, outside /api and not / or /wsds')
  }
  return text
}

function parseSocketPath(text: string, name: string): string {
  // sun_path holds 108 bytes on Linux (104 on macOS), the terminating NUL included.
  if (!text.startsWith('/') || Buffer.byteLength(text) > 100) bad(name, text, 'must be an absolute path of at most 100 bytes')
  return text
}

function parseSocketMode(text: string, name: string): number {
  if (!/^0?[0-7]{3}$/.test(text.trim())) bad(name, text, 'must be octal permissions like 660')
  return parseInt(text.trim(), 8)
}

function parseAdminToken(text: string): string {
  // The token is a secret: the message says what is wrong without echoing it.
  if (!/^[\x21-\x7e]{16,512}$/.test(text)) throw new WsdsError('ERR_CONFIG', 'WSDS_ADMIN_TOKEN: must be 16-512 printable characters without spaces (value not shown)')
  return text
}

/**
 * Every setting of `wsds serve`, once, in --help and README order. A default computed from
 * other settings reads only those above it. The protocol entries are core's
 * (src/core/settings.ts); only the allowlist's default is the server's own.
 */
export const SETTINGS: readonly Setting<C>[] = [
  { key: 'port', env: 'PORT', flag: '--port', default: '8080', help: 'TCP port', parse: wholeNumber(0, 65535) },
  { key: 'host', env: 'HOST', flag: '--host', default: '127.0.0.1', help: 'listen address', parse: asText },
  {
    ...protocol.allowedOrigins,
    default: { from: (s) => `http://localhost:${s.port},http://127.0.0.1:${s.port}` },
    defaultText: '`http://localhost:PORT,http://127.0.0.1:PORT`',
  },
  protocol.corsOrigins,
  {
    key: 'keySets',
    env: 'WSDS_KEYS_FILE',
    flag: '--keys-file',
    default: '',
    defaultText: 'ephemeral set',
    help: 'comma-separated key set files; the first is current, the others still accepted (rotation)',
    parse: parseKeySets,
  },
  protocol.challengeTimeoutMs,
  {
    key: 'rateLimit',
    env: 'WSDS_RATE_LIMIT',
    flag: '--rate-limit',
    default: '200',
    negate: 'off',
    help: 'upgrades per second per client address, bursts of twice that, or `off`',
    parse: offOr(wholeNumber(1, 1_000_000)),
  },
  {
    key: 'store',
    env: 'WSDS_STORE',
    flag: '--store',
    default: 'memory',
    help: '`memory`, `redis://host:port/db`, `rediss://...`, `redis-sentinel://h1:p1,h2:p2/<master-name>`, `redis-cluster://h1:p1,h2:p2`, `dynamodb://table?region=...&endpoint=...`',
    parse: parseStore,
  },
  {
    key: 'authCacheTtlMs',
    env: 'WSDS_AUTH_CACHE_TTL_MS',
    flag: '--auth-cache-ttl-ms',
    // DynamoDB cannot push deletions to other nodes: there the cache TTL is the revocation
    // bound, so its default favours revocation over read cost.
    default: { from: (s) => (s.store.startsWith('dynamodb:') ? '5000' : '300000') },
    defaultText: '`300000`; `5000` on DynamoDB',
    help: 'how long an admitted id is trusted without reading the store, 0 = off; deletions drop it at once',
    parse: wholeNumber(0, 86_400_000),
  },
  {
    key: 'storeOutage',
    env: 'WSDS_STORE_OUTAGE',
    flag: '--store-outage',
    default: 'closed',
    help: 'while the store is unreachable: `closed` answers 503, `cached` keeps admitting ids cached before the outage for at most the cache TTL',
    more: '([docs/cluster.md](docs/cluster.md#outage-policy))',
    parse: oneOf<StoreOutagePolicy>(['closed', 'cached'], 'must be closed or cached'),
  },
  {
    key: 'storePrefix',
    env: 'WSDS_STORE_PREFIX',
    flag: '--store-prefix',
    default: 'wsds:',
    help: 'Redis key prefix, so deployments can share a Redis',
    parse: matching(/^[A-Za-z0-9:_.{}-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9:_.{}-]'),
  },
  {
    key: 'leaseMs',
    env: 'WSDS_LEASE_MS',
    flag: '--lease-ms',
    default: '30000',
    help: "record lease, renewed by the owning node; a dead node's ids stop working within 2 leases",
    parse: wholeNumber(100, 86_400_000),
  },
  {
    key: 'upstream',
    env: 'WSDS_UPSTREAM',
    flag: '--upstream',
    default: null,
    defaultText: 'demo greeting service',
    help: 'URL of the API behind `/api/*` (the `/api` prefix is removed)',
    parse: parseUpstream,
  },
  protocol.mode,
  {
    key: 'trustProxy',
    env: 'WSDS_TRUST_PROXY',
    flag: '--trust-proxy',
    default: 'off',
    negate: 'switch',
    help: 'take the client address from `X-Forwarded-For`',
    parse: onOff,
  },
  {
    key: 'demo',
    env: 'WSDS_DEMO',
    flag: '--demo',
    // The demo hands its key set to anyone: with real keys loaded it is off unless asked for,
    // and even then it never serves those (src/server/server.ts gives it a set of its own).
    default: { from: (s) => (s.keySets.length === 0 ? 'on' : 'off') },
    defaultText: '`on`; `off` with `WSDS_KEYS_FILE`',
    negate: 'switch',
    help: 'serve the demo page at `/`; it never serves the keys of `WSDS_KEYS_FILE`',
    more: '(turned on with a keys file, it runs on an ephemeral key set of its own, which that node then accepts: anyone can verify through it, so not on a production gateway)',
    parse: onOff,
  },
  protocol.maxPayloadBytes,
  {
    key: 'metricsToken',
    env: 'WSDS_METRICS_TOKEN',
    flag: '--metrics-token',
    default: null,
    defaultText: 'none',
    help: 'bearer token required by `/metrics`',
    more: '(without one on a non-loopback `HOST`, the start logs a warning)',
    parse: asText,
  },
  {
    key: 'metricsPath',
    env: 'WSDS_METRICS_PATH',
    flag: '--metrics-path',
    default: '/metrics',
    help: 'path of the Prometheus endpoint',
    parse: matching(/^\/[A-Za-z0-9._~\/-]+$/, 'must be a path like /metrics'),
  },
  {
    key: 'metricsPort',
    env: 'WSDS_METRICS_PORT',
    flag: '--metrics-port',
    default: null,
    defaultText: 'gateway port',
    help: 'serve metrics on a port of their own (off the public listener)',
    parse: wholeNumber(0, 65535),
  },
  {
    key: 'authPath',
    env: 'WSDS_AUTH_PATH',
    flag: '--auth-path',
    default: '/wsds/auth',
    help: 'path of the forward auth endpoint (204, 401 or 503)',
    parse: parseAuthPath,
  },
  {
    key: 'socketPath',
    env: 'WSDS_SOCKET',
    flag: '--socket',
    default: null,
    defaultText: 'none',
    help: 'also listen on this Unix socket path, for a proxy on the same host',
    more: '([integrations](docs/integrations.md#on-the-same-host-the-gateway-on-a-unix-socket))',
    parse: parseSocketPath,
  },
  {
    key: 'socketMode',
    env: 'WSDS_SOCKET_MODE',
    flag: '--socket-mode',
    default: '660',
    help: 'octal permissions of that socket (connecting needs write)',
    parse: parseSocketMode,
  },
  protocol.challengeForms,
  protocol.engineChecks,
  protocol.policyFile,
  {
    key: 'logLevel',
    env: 'WSDS_LOG_LEVEL',
    flag: '--log-level',
    default: 'info',
    help: '`debug`, `info`, `warn`, `error` or `silent`',
    parse: oneOf(['debug', 'info', 'warn', 'error', 'silent'], 'must be debug, info, warn, error or silent'),
  },
  protocol.rechallengeMs,
  protocol.powBits,
  {
    key: 'powMaxBits',
    env: 'WSDS_POW_MAX_BITS',
    flag: '--pow-max-bits',
    default: { from: (s) => (s.powBits > 0 ? String(Math.max(s.powBits, 20)) : '0') },
    defaultText: '`20` if `WSDS_POW_BITS` > 0, else `0` = no escalation',
    help: 'cap of proof-of-work escalation per address and under load',
    parse: (text, name, s) => {
      const bits = int(name, text, 0, 32)
      if (bits < s.powBits) bad(name, text, `must be at least WSDS_POW_BITS (${s.powBits})`)
      return bits
    },
  },
  {
    key: 'adminToken',
    env: 'WSDS_ADMIN_TOKEN',
    flag: '--admin-token',
    default: null,
    defaultText: 'none: endpoint off',
    help: 'bearer token of `POST /wsds/admin/rechallenge` (`wsds rechallenge`), 16-512 characters; set it in the environment, not as a flag',
    parse: parseAdminToken,
  },
  protocol.binding,
  protocol.bindingWindowMs,
  protocol.idRateLimit,
]

/**
 * Parses `--name value` / `--name=value` flags (node:util parseArgs, strict), plus `--no-name`
 * for switches and for settings that can be `off`, into env-named values. Throws ERR_CONFIG.
 */
export function flagsToEnv(argv: readonly string[]): Record<string, string> {
  return parseFlags(SETTINGS, argv)
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
  return readSettings(SETTINGS, { ...env, ...flagsToEnv(argv) })
}
