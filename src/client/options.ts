/**
 * Reads and checks connect()'s options once, up front: a bad one is an ERR_CONFIG naming the
 * option and the value (never the keys), before any socket opens. Also the reconnect backoff.
 */
import { WsdsError } from '../core/errors.ts'
import type { ChallengeForm } from '../core/protocol.ts'
import type { ChallengeFunction, ConnectOptions, ReconnectOptions, WebSocketConstructor } from './types.ts'

/** connect()'s options with defaults applied, checked. */
export interface Settings {
  url: string
  keys: readonly string[]
  Socket: WebSocketConstructor
  keySet: string | undefined
  header: string
  pingIntervalMs: number
  handshakeTimeoutMs: number
  /** null: no reconnects. */
  backoff: Required<ReconnectOptions> | null
  evaluate: (code: string) => ChallengeFunction
  forms: readonly ChallengeForm[]
  /** WebCrypto for request binding; undefined: unbound. */
  subtle: SubtleCrypto | undefined
}

// Needs CSP `script-src 'unsafe-eval'`: the challenge is fresh source every time (PROTOCOL.md, "Polymorphic").
const evaluateWithFunction = (code: string): ChallengeFunction => new Function('return (' + code + ')')()

export function readOptions(options: ConnectOptions): Settings {
  const url = resolveUrl(options.url)
  const keys = checkKeys(options.keys)
  const Socket = (options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket) as WebSocketConstructor
  need(typeof Socket === 'function', 'WebSocket', Socket, 'missing (in Node pass `ws`):')
  const keySet = options.keySet
  need(keySet === undefined || (typeof keySet === 'string' && keySet !== ''), 'keySet', keySet)
  const header = options.header ?? 'connectionId'
  need(typeof header === 'string' && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(header), 'header', header)
  const pingIntervalMs = options.pingIntervalMs ?? 25000
  need(isDelay(pingIntervalMs), 'pingIntervalMs', pingIntervalMs)
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 15000
  need(isDelay(handshakeTimeoutMs), 'handshakeTimeoutMs', handshakeTimeoutMs)
  const backoff = reconnectPolicy(options.reconnect)
  const evaluate = options.evaluate ?? evaluateWithFunction
  // Program first, always: it needs no eval, so no CSP can refuse it, and probing for
  // 'unsafe-eval' with `new Function` would itself file a CSP violation report.
  const forms = options.forms ?? (options.evaluate ? ['code', 'program'] : ['program', 'code'])
  need(Array.isArray(forms) && forms.length > 0 && forms.every((f) => f === 'code' || f === 'program'), 'forms', forms)
  // No crypto.subtle (plain http other than localhost): unbound, which `optional` accepts.
  const subtle = options.bind === false ? undefined : globalThis.crypto?.subtle
  return { url, keys, Socket, keySet, header, pingIntervalMs, handshakeTimeoutMs, backoff, evaluate, forms, subtle }
}

/** The reconnect schedule's bounds; null when reconnects are off. */
export function reconnectPolicy(option: ConnectOptions['reconnect']): Required<ReconnectOptions> | null {
  if (option === false) return null
  const o = option === true || option === undefined ? {} : option
  const minDelayMs = o.minDelayMs ?? 500
  const maxDelayMs = o.maxDelayMs ?? 30000
  const maxAttempts = o.maxAttempts ?? Infinity
  need(isDelay(minDelayMs), 'reconnect.minDelayMs', minDelayMs)
  need(isDelay(maxDelayMs) && maxDelayMs >= minDelayMs, 'reconnect.maxDelayMs', maxDelayMs)
  need(maxAttempts >= 0, 'reconnect.maxAttempts', maxAttempts)
  return { minDelayMs, maxDelayMs, maxAttempts }
}

/**
 * Delay before reconnect number `retries` + 1, ms: minDelayMs doubling per failed attempt up
 * to maxDelayMs, then jittered into [base/2, base). Jitter spreads the reconnects of many
 * pages after a gateway restart. `random` is Math.random's range, [0, 1).
 */
export function reconnectDelay(policy: Required<ReconnectOptions>, retries: number, random: number): number {
  const base = Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** retries)
  return base / 2 + (random * base) / 2
}

/** Throws ERR_CONFIG for `option` unless `ok`. */
function need(ok: unknown, option: string, value: unknown, why = 'bad value'): asserts ok {
  if (!ok) throw new WsdsError('ERR_CONFIG', `${option}: ${why} ${JSON.stringify(value) ?? String(value)}`)
}

const isDelay = (ms: number): boolean => ms >= 0 && ms < 2 ** 31

function resolveUrl(url: string): string {
  need(typeof url === 'string' && url !== '', 'url', url)
  const base = (globalThis as { location?: { href?: string } }).location?.href
  let parsed: URL | undefined
  try {
    parsed = new URL(url, base)
    // http -> ws, https -> wss
    parsed.protocol = parsed.protocol.replace(/^http/, 'ws')
  } catch {}
  need(parsed && /^wss?:$/.test(parsed.protocol), 'url', url, base || parsed ? 'bad value' : 'no page location to resolve')
  parsed = parsed!
  // WebSocket URLs may not carry a fragment; a page URL's would make the constructor throw.
  parsed.hash = ''
  return parsed.href
}

function checkKeys(keys: readonly string[]): readonly string[] {
  // Never in the message: the keys are the app's secrets.
  if (!(Array.isArray(keys) && keys.length > 0 && keys.every((key) => typeof key === 'string' && key !== ''))) {
    throw new WsdsError('ERR_CONFIG', 'keys: need non-empty strings')
  }
  return Object.freeze([...keys])
}
