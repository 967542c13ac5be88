/**
 * What the framework middleware have in common: options in, a Front out (core/front.ts
 * decides; adapters only read the request and write the answer). Web APIs only, statically:
 * the Hono adapter imports this on runtimes without node:*. A `storeUrl` is opened through
 * stores/open-store.ts's `openStore`, loaded on demand, so only apps that ask for one load ioredis.
 */
import { CONNECTION_ID_HEADER, SERVICE_TOKEN_HEADER, type AccessRequest } from '../core/access.ts'
import { createAuthenticator, type Authenticator } from '../core/authenticator.ts'
import type { RequestMacFactory } from '../core/binding.ts'
import { WsdsError } from '../core/errors.ts'
import {
  CONNECTION_ID_RESPONSE_HEADER,
  ORIGIN_RESPONSE_HEADER,
  RULE_HEADER,
  VERDICT_HEADER,
  createFront,
  type Front,
  type FrontDecision,
  type Mode,
  type Verdict,
} from '../core/front.ts'
import { compilePolicy, serviceTokenFrom, type PolicySource } from '../core/policy.ts'
import { Listeners, type Store } from '../core/store.ts'
import { BAD_PATH_BODY, checkTarget } from '../core/target.ts'

export type { FrontDecision, Mode, Verdict } from '../core/front.ts'
export type { Store } from '../core/store.ts'

export interface WsdsMiddlewareOptions {
  /**
   * The store the gateway writes to (memory in the same process, Redis, DynamoDB, or any
   * `Store`). The caller owns it: `close()` does not close it. Exactly one of `store`, `storeUrl`.
   */
  store?: Store
  /**
   * `redis://`, `rediss://` or `dynamodb://` URL, the gateway's `WSDS_STORE`; opened by the
   * middleware and closed by its `close()`. Node only.
   */
  storeUrl?: string
  /** Redis key prefix, the gateway's `WSDS_STORE_PREFIX` (default 'wsds:'); only with `storeUrl`. */
  storePrefix?: string
  /**
   * How long an admitted id is trusted without reading the store, ms (default 300000, as the
   * gateway's WSDS_AUTH_CACHE_TTL_MS; 5000 for a dynamodb:// storeUrl; 0 = no cache). Memory and
   * Redis push deletions, so revocation never waits for it; DynamoDB cannot, so with a DynamoDB
   * `store` pass a short one yourself: it is the revocation bound.
   */
  cacheTtlMs?: number
  /** Request header carrying the id (default 'connectionId', PROTOCOL.md Sequence 8); case-insensitive. */
  header?: string
  /** 'enforce' (default) refuses; 'monitor' admits all and labels `x-wsds-verdict`. */
  mode?: Mode
  /**
   * How far a bound connection's signature time may be from now, ms (the gateway's
   * WSDS_BINDING_WINDOW_MS, default 30000). Bound connections are always checked
   * (PROTOCOL.md, "Request binding"): their id alone admits nothing.
   */
  bindingWindowMs?: number
  /** Admitted requests per second per connectionId, bursts of twice that (WSDS_ID_RATE_LIMIT); default off. */
  idRateLimit?: number
  /**
   * Policy rules (PROTOCOL.md, "Policy rules"): the decoded file (`{ rules, default }`) or a
   * source whose `current` a reload replaces (`openPolicyFile(path)` from `wsds/server`).
   * Default: none, every request gets the WSDS check.
   */
  policy?: PolicySource | object
}

/** The verified connection a handler sees (`req.wsds`, `request.wsds`, `c.get('wsds')`). */
export interface WsdsConnection {
  connectionId: string
  /** Origin of the page that opened the socket (on the gateway's allowlist). */
  origin: string
  /** When the connection was verified, epoch ms. */
  verifiedAt: number
  /** Always 'allow': the connection is set only for admitted requests, in both modes. */
  verdict: 'allow'
}

/** What every adapter's middleware carries besides being one. */
export interface WsdsHandle {
  /** The shared decision, with counts of decisions by verdict for metrics. */
  readonly front: Front
  /** The positive cache TTL in force, ms. */
  readonly cacheTtlMs: number
  /**
   * Resolves when the store is open (a given `store`: at once; a `storeUrl`: when connected,
   * or after 5 s of trying, then failing closed with 503 until it is reachable). Rejects when
   * the store could not be opened at all. Requests made before wait for it.
   */
  ready(): Promise<void>
  /** Unsubscribes from the store and, for a `storeUrl`, closes it. Idempotent. */
  close(): Promise<void>
}

export interface WsdsGuard extends WsdsHandle {
  /** Lower-cased name of the id header. */
  readonly header: string
  decide(request: AccessRequest): Promise<FrontDecision>
  /**
   * A cached decision, synchronously (no promise on the hot path), or undefined: then `decide`.
   * A bound connection needs `request` (method, target, signature).
   */
  decideCached(connectionId: string | undefined, request?: AccessRequest): FrontDecision | undefined
}

/** Prefix of the request headers WSDS sets; the id header may not use it. */
export const WSDS_HEADER_PREFIX = 'x-wsds-'

/**
 * The request headers a middleware sets (lower case). Only these mean anything to a handler,
 * so only these are cleared of what the client sent: checking three names is cheaper than
 * scanning every header on every request.
 */
export const OWN_HEADERS = [VERDICT_HEADER, CONNECTION_ID_RESPONSE_HEADER, ORIGIN_RESPONSE_HEADER, RULE_HEADER] as const

/** A request's service token, from a header getter (Node's object or a Fetch `Headers`). */
export function serviceTokenOfHeaders(get: (name: string) => string | null | undefined): string | undefined {
  return serviceTokenFrom(get(SERVICE_TOKEN_HEADER), get('authorization'))
}

/** One value of a Node header (only set-cookie comes as an array). */
export const firstValue = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value)

/**
 * Labels a Node request's header object (Express, Fastify): our headers from the decision,
 * and none of the client's under our names. A name is deleted only when the client sent it:
 * `delete` turns the object into a slow dictionary for the rest of the request.
 */
export function labelNodeHeaders(headers: Record<string, string | string[] | undefined>, set: Readonly<Record<string, string>>): void {
  for (const name of OWN_HEADERS) {
    const value = set[name]
    if (value !== undefined) headers[name] = value
    else if (headers[name] !== undefined) delete headers[name]
  }
}

// RFC 9110 token: what a header field name may be.
const TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const STORE_URL_RE = /^(redis|rediss|redis-sentinel|redis-cluster|dynamodb):\/\//
const KNOWN = new Set(['store', 'storeUrl', 'storePrefix', 'cacheTtlMs', 'header', 'mode', 'bindingWindowMs', 'idRateLimit', 'onReject', 'policy'])

const bad = (option: string, value: unknown, why: string): never => {
  const shown = typeof value === 'function' ? 'a function' : typeof value === 'string' ? JSON.stringify(value) : String(value)
  throw new WsdsError('ERR_CONFIG', `wsds middleware: ${option} ${why}, got ${shown}`)
}

const isStore = (value: unknown): value is Store =>
  typeof value === 'object' &&
  value !== null &&
  ['get', 'onDelete', 'onReset', 'close'].every((m) => typeof (value as Record<string, unknown>)[m] === 'function')

/** Checks everything before anything is opened, so a bad option never leaks a connection. */
export function validateOptions(options: WsdsMiddlewareOptions & { onReject?: unknown }, foreign: readonly string[] = []): void {
  if (typeof options !== 'object' || options === null) bad('options', options, 'must be an object')
  for (const key of Object.keys(options)) {
    // A misspelt option (storeURL, cacheTTL) would otherwise be ignored silently.
    if (!KNOWN.has(key) && !foreign.includes(key)) {
      throw new WsdsError('ERR_CONFIG', `wsds middleware: ${key} is not an option (known: ${[...KNOWN].join(', ')})`)
    }
  }
  const { store, storeUrl } = options
  if (store === undefined && storeUrl === undefined) {
    throw new WsdsError('ERR_CONFIG', 'wsds middleware: store or storeUrl is required (the store the gateway writes to)')
  }
  if (store !== undefined && storeUrl !== undefined) {
    throw new WsdsError('ERR_CONFIG', 'wsds middleware: store and storeUrl are exclusive: pass one')
  }
  if (store !== undefined && !isStore(store)) bad('store', store, 'must be a Store (get, onDelete, onReset, close)')
  if (storeUrl !== undefined) {
    if (typeof storeUrl !== 'string' || !STORE_URL_RE.test(storeUrl)) {
      bad('storeUrl', storeUrl, 'must be a redis://, rediss:// or dynamodb:// URL (a private memory store would admit nothing)')
    }
    let url: URL
    try {
      url = new URL(storeUrl)
    } catch (cause) {
      throw new WsdsError('ERR_CONFIG', `wsds middleware: storeUrl ${JSON.stringify(storeUrl)} is not a URL`, { cause })
    }
    // Checked here too (connectRedis checks it when opening) so it fails at creation, not on every request.
    if (url.protocol !== 'dynamodb:' && url.pathname.length > 1 && !/^\/\d+$/.test(url.pathname)) {
      bad('storeUrl', storeUrl, 'has a bad Redis database number')
    }
  }
  if (options.storePrefix !== undefined) {
    if (storeUrl === undefined) bad('storePrefix', options.storePrefix, 'applies only with storeUrl')
    if (typeof options.storePrefix !== 'string') bad('storePrefix', options.storePrefix, 'must be a string')
  }
  const ttl = options.cacheTtlMs
  if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 0)) {
    bad('cacheTtlMs', ttl, 'must be a non-negative number of milliseconds')
  }
  const header = options.header
  if (header !== undefined && (typeof header !== 'string' || !TOKEN_RE.test(header))) bad('header', header, 'must be an HTTP header name')
  if (typeof header === 'string' && header.toLowerCase().startsWith(WSDS_HEADER_PREFIX)) {
    bad('header', header, `must not start with ${WSDS_HEADER_PREFIX} (those are set by the middleware)`)
  }
  const mode = options.mode
  if (mode !== undefined && mode !== 'enforce' && mode !== 'monitor') bad('mode', mode, 'must be enforce or monitor')
  const window = options.bindingWindowMs
  if (window !== undefined && (typeof window !== 'number' || !Number.isInteger(window) || window < 0)) {
    bad('bindingWindowMs', window, 'must be a non-negative whole number of milliseconds')
  }
  const idRate = options.idRateLimit
  if (idRate !== undefined && (typeof idRate !== 'number' || !Number.isFinite(idRate) || idRate <= 0)) {
    bad('idRateLimit', idRate, 'must be a positive number of requests per second')
  }
  if (options.onReject !== undefined && typeof options.onReject !== 'function') bad('onReject', options.onReject, 'must be a function')
  if (options.policy !== undefined && (typeof options.policy !== 'object' || options.policy === null)) {
    bad('policy', options.policy, 'must be the decoded rules ({ rules, default }) or a policy source')
  }
}

const isPolicySource = (value: object): value is PolicySource => 'current' in value

/** The policy option as a source; decoded rules are validated here (ERR_POLICY names rule and field). */
function policySourceOf(policy: PolicySource | object | undefined): PolicySource | undefined {
  if (policy === undefined) return undefined
  if (isPolicySource(policy)) return policy
  try {
    return { current: compilePolicy(policy) }
  } catch (cause) {
    throw new WsdsError('ERR_CONFIG', `wsds middleware: policy ${(cause as Error).message}`, { cause })
  }
}

/**
 * A Store that stands in while the real one opens, so the Front exists from the start:
 * reads wait for the opening; subscriptions are forwarded once it is open.
 */
function storeOpenedLater(opening: Promise<Store>): Store {
  let real: Store | null = null
  const deletes = new Listeners<[string]>()
  const resets = new Listeners<[]>()
  const settled = opening.then((store) => {
    real = store
    store.onDelete((id) => deletes.emit(id))
    store.onReset(() => resets.emit())
    return store
  })
  // A failed opening surfaces through ready(); requests meanwhile fail closed (503).
  settled.catch(() => {})
  const open = async () => real ?? (await settled)
  return {
    put: async (record, options) => (await open()).put(record, options),
    get: async (id) => (await open()).get(id),
    delete: async (id) => (await open()).delete(id),
    renew: async (ids, options) => (await open()).renew(ids, options),
    onDelete: (listener) => deletes.add(listener),
    onReset: (listener) => resets.add(listener),
    onStatus: () => () => {},
    close: async () => {
      const store = await settled.catch(() => null)
      await store?.close()
    },
  }
}

/**
 * stores/open-store.ts, next to this file's own extension: `.ts` when run from the
 * repository's sources, `.js` in the installed package's dist/. Computed, so bundlers for
 * edge runtimes (where a storeUrl cannot work) leave it alone instead of pulling ioredis and
 * node:* into a Hono app that passes its own store.
 */
function openStoreModuleUrl(): string {
  const here = import.meta.url
  const path = `../stores/open-store${here.endsWith('.ts') ? '.ts' : '.js'}`
  // Both arguments are variables: bundlers treat `new URL('literal', import.meta.url)` as an asset.
  return new URL(path, here).href
}

/**
 * The part of stores/open-store.ts used here, declared rather than imported so the Hono
 * adapter's types stay free of Node's (test/middleware.test.ts checks the two agree).
 */
export interface OpenStoreModule {
  openStore(config: { store: string; storePrefix: string; rateLimit: null }): Promise<{ store: Store }>
}

async function openStoreUrl(url: string, prefix: string): Promise<Store> {
  const specifier = openStoreModuleUrl()
  const { openStore } = (await import(/* webpackIgnore: true */ /* @vite-ignore */ specifier)) as OpenStoreModule
  const opened = await openStore({ store: url, storePrefix: prefix, rateLimit: null })
  return opened.store
}

/**
 * Options in, a decision function out. Throws ERR_CONFIG naming the bad option. `requestMac`:
 * the Node adapters pass node:crypto's HMAC; without it the front uses plain JavaScript, so
 * the Hono adapter stays free of node:*.
 */
export function createGuard(
  options: WsdsMiddlewareOptions & { onReject?: unknown },
  foreign: readonly string[] = [],
  requestMac?: RequestMacFactory,
): WsdsGuard {
  validateOptions(options, foreign)
  // Before the store opens: bad rules must not leak a connection.
  const policy = policySourceOf(options.policy)
  const header = (options.header ?? CONNECTION_ID_HEADER).toLowerCase()
  const opening = options.store !== undefined ? null : openStoreUrl(options.storeUrl!, options.storePrefix ?? 'wsds:')
  const store = options.store ?? storeOpenedLater(opening!)
  // DynamoDB has no push: the cache TTL is how long a closed socket's id may still pass
  // (the server picks the same default for the same reason).
  const cacheTtlMs = options.cacheTtlMs ?? (options.storeUrl?.startsWith('dynamodb:') ? 5000 : 300_000)
  const authenticator: Authenticator = createAuthenticator({ store, cacheTtlMs })
  const front = createFront({
    authenticator,
    mode: options.mode ?? 'enforce',
    ...(options.bindingWindowMs !== undefined ? { bindingWindowMs: options.bindingWindowMs } : {}),
    ...(requestMac !== undefined ? { requestMac } : {}),
    idRateLimit: options.idRateLimit ?? null,
    ...(policy !== undefined ? { policy } : {}),
  })
  let closing: Promise<void> | null = null
  return {
    header,
    front,
    cacheTtlMs,
    decide: (request) => front.decide(request),
    decideCached: (connectionId, request) => front.decideCached(connectionId, request),
    async ready() {
      if (opening !== null) await opening
    },
    close() {
      closing ??= (async () => {
        authenticator.close()
        // Only a store we opened is ours to close.
        if (opening !== null) await store.close()
      })()
      return closing
    },
  }
}

/** The handle part of a guard, for an adapter to put on its middleware. */
export function handleOf(guard: WsdsGuard): WsdsHandle {
  return { front: guard.front, cacheTtlMs: guard.cacheTtlMs, ready: guard.ready, close: guard.close }
}

/** The connection a passing decision admitted, or undefined (denied, or labelled in monitor mode). */
export function connectionOf(decision: FrontDecision): WsdsConnection | undefined {
  const record = decision.record
  if (record === null || decision.verdict !== 'allow') return undefined
  return {
    connectionId: record.connectionId,
    origin: record.origin,
    verifiedAt: record.verifiedAt ?? record.createdAt,
    verdict: 'allow',
  }
}

/**
 * Whether a request-target is refused before any decision (src/core/target.ts): every front
 * answers it 400 `{"error":"bad-path"}`, so routing, policy and signatures see one path.
 */
export const refusesTarget = (target: string | undefined): boolean => target !== undefined && !checkTarget(target).ok

export { BAD_PATH_BODY }
export const BAD_PATH_HEADERS: Readonly<Record<string, string>> = Object.freeze({ 'content-type': 'application/json', 'cache-control': 'no-store' })

/** Headers of the refusal, as the gateway's proxy sends them (proxy/http-auth.ts sendJson). */
export function refusalHeaders(decision: FrontDecision): Record<string, string> {
  return { 'content-type': 'application/json', 'cache-control': 'no-store', ...decision.headers }
}
