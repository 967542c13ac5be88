/**
 * Browser SDK: opens the WSDS socket, answers every challenge, and adds the verified
 * connectionId to REST calls (PROTOCOL.md, Sequence). No dependencies, and nothing from core
 * but the pure wire and error modules, so it bundles to a few kilobytes.
 */
import { WsdsError, type WsdsErrorCode } from '../core/errors.ts'
import {
  PROTOCOL_VERSION,
  type ChallengeForm,
  type ChallengeMessage,
  type ClientMessage,
  type RejectReason,
} from '../core/protocol.ts'
import { decodeProgram, runProgram, treeSignature, type TreeNode } from '../core/program.ts'

export { WsdsError, isWsdsError, type WsdsErrorCode } from '../core/errors.ts'
export type { RejectReason } from '../core/protocol.ts'

/** The function a challenge's `code` evaluates to (PROTOCOL.md, Sequence 5). */
export type ChallengeFunction = (input: { keys: readonly string[] }) => unknown

export interface ReconnectOptions {
  /** Delay before the first reconnect, ms (default 500); doubles per failed attempt, with jitter. */
  minDelayMs?: number
  /** Upper bound of the delay, ms (default 30000). */
  maxDelayMs?: number
  /** Reconnects in a row without a verification before giving up (default Infinity). */
  maxAttempts?: number
}

/**
 * The part of a WebSocket the SDK uses. The browser's WebSocket and `ws`'s both fit; the
 * handler parameters are `any` because the two libraries type their events differently.
 */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  onopen: ((event: any) => void) | null
  onmessage: ((event: any) => void) | null
  onclose: ((event: any) => void) | null
  onerror: ((event: any) => void) | null
}

export type WebSocketConstructor = new (url: string) => WebSocketLike

type Waiter = [resolve: (id: string) => void, reject: (error: unknown) => void]

export interface ConnectOptions {
  /** ws:// or wss:// URL of the gateway's /wsds endpoint; relative URLs resolve against `location` (http -> ws, https -> wss). */
  url: string
  /** The key set's keys, bundled with the app; never sent over the socket. */
  keys: readonly string[]
  /** Key set id, sent as `hello.keySet` (default: none, the gateway's current set). */
  keySet?: string
  /** Reconnect after a close that a new connection can fix (default true: 500 ms doubling to 30 s, unlimited). */
  reconnect?: boolean | ReconnectOptions
  /** Interval of `{"action":"ping"}` keep-alives, ms (default 25000; 0 = off). */
  pingIntervalMs?: number
  /**
   * How long a connection may go without a `challenge`, ms, from opening the socket (default
   * 15000; 0 = off). A gateway that never challenges (on AWS: a handler that failed before
   * answering) is given up on and a new connection is made, with backoff; without reconnects
   * the session fails with ERR_HANDSHAKE_TIMEOUT.
   */
  handshakeTimeoutMs?: number
  /** Header that carries the connectionId on REST calls (default 'connectionId'). */
  header?: string
  /** WebSocket implementation (default globalThis.WebSocket); pass `ws`'s in Node. */
  WebSocket?: WebSocketConstructor
  /**
   * Turns a `code` challenge's source into a function. The default uses `new Function`,
   * which needs CSP `script-src 'unsafe-eval'`; `program` challenges never use it.
   */
  evaluate?: (code: string) => ChallengeFunction
  /**
   * Request binding (PROTOCOL.md, "Request binding"): offer a per-connection key and sign every
   * REST call (default true wherever `crypto.subtle` exists, i.e. secure contexts).
   */
  bind?: boolean
  /**
   * Challenge forms to offer, in order of preference (default ['program', 'code'], or
   * ['code', 'program'] when `evaluate` is set). 'program' needs no eval: it runs under a
   * strict CSP and with Trusted Types enforced (docs/integrations.md, "Content-Security-Policy").
   */
  forms?: readonly ChallengeForm[]
}

export interface CloseInfo {
  code: number
  reason: string
  willReconnect: boolean
}

export interface SessionEvents {
  /** The gateway assigned an id; not yet admitted by authenticators. */
  connection: (connectionId: string) => void
  /** A challenge arrived (also on a verified connection: re-verification). */
  challenge: (info: { expiresInMs: number }) => void
  /** Fires on every `verified`, re-verifications of the same connection included. */
  verified: (connectionId: string) => void
  rejected: (reason: RejectReason) => void
  closed: (info: CloseInfo) => void
}

export interface WsdsSession {
  /** Id of the current connection; null while none is open. Changes on every reconnect. */
  readonly connectionId: string | null
  /** True while the current connection is verified, re-challenges in progress included. */
  readonly verified: boolean
  /**
   * Resolves with the connectionId on the first `verified`. Rejects only when the session
   * gives up before that: with the `rejected` reason that ended it, ERR_CONNECT (the socket
   * never opened), ERR_CLOSED (closed without a reason, or close() was called) or ERR_CONFIG
   * (the challenge could not be run). With unlimited reconnects it waits across failures.
   */
  readonly ready: Promise<string>
  /**
   * globalThis.fetch with the connectionId header added, once the current connection is
   * verified. Rejects with the session's final error if it gives up, and honours init.signal
   * while waiting.
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>
  /**
   * The `WSDS-Signature` header value for a request by another HTTP client (axios, ky, XHR),
   * once verified; null when the connection is not bound. `url` resolves against the page,
   * and the signature covers the path and query the browser will send. Valid for the
   * gateway's window (30 s by default): sign each request just before sending it.
   */
  sign(method: string, url: string | URL): Promise<string | null>
  /** Adds a listener; returns a function that removes it. A throwing listener is reported, never propagated. */
  on<K extends keyof SessionEvents>(event: K, fn: SessionEvents[K]): () => void
  /** Closes with 1000 and stops reconnecting for good. */
  close(): void
}

// The reject reasons this SDK knows (PROTOCOL.md, Sequence 7). The first six are ones a new
// connection would only hit again: retrying them would hammer the gateway with handshakes
// bound to fail.
const REASONS = 'stale-keyset unsupported-version bad-domain wrong-answer bad-binding binding-required bad-token timeout unsupported-form'.split(' ')
const PERMANENT = REASONS.slice(0, 6)
const EVENTS = 'connection challenge verified rejected closed'.split(' ')
const OPEN = 1

// Needs CSP `script-src 'unsafe-eval'`: the challenge is fresh source every time (PROTOCOL.md, "Polymorphic").
const evaluateWithFunction = (code: string): ChallengeFunction => new Function('return (' + code + ')')()

export function connect(options: ConnectOptions): WsdsSession {
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

  const listeners = new Map(EVENTS.map((event) => [event, new Set<(arg: any) => void>()]))
  let socket: WebSocketLike | null = null
  let connectionId: string | null = null
  let verified = false
  // K_req of the current connection, a non-extractable HMAC key; null when unbound.
  let requestKey: CryptoKey | null = null
  let retries = 0
  let stopped: WsdsError | null = null
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined
  let pingTimer: ReturnType<typeof setInterval> | undefined
  // Callers waiting for a verified connection; `ready` is the first of them, so it settles
  // with the first verification or with giving up before one.
  let waiters: Waiter[] = []
  const ready = new Promise<string>((resolve, reject) => void waiters.push([resolve, reject]))
  // Marks the promise handled: a page that never awaits `ready` must not get an
  // unhandledrejection for a session it has already seen fail through events.
  ready.catch(() => {})

  function emit<K extends keyof SessionEvents>(event: K, arg: Parameters<SessionEvents[K]>[0]): void {
    for (const fn of [...listeners.get(event)!]) {
      try {
        fn(arg)
      } catch (error) {
        // Like EventTarget: the page hears of it, the socket callback that emitted goes on.
        if (typeof reportError === 'function') reportError(error)
        else console.error(error)
      }
    }
  }

  function giveUp(error: WsdsError): void {
    if (stopped) return
    stopped = error
    verified = false
    clearTimeout(reconnectTimer)
    for (const waiter of waiters.splice(0)) waiter[1](error)
  }

  function send(ws: WebSocketLike, message: ClientMessage): void {
    if (ws.readyState !== OPEN) return
    try {
      ws.send(JSON.stringify(message))
    } catch {
      // The socket is going away; its close event decides what happens next.
    }
  }

  function open(): void {
    let ws: WebSocketLike
    try {
      ws = new Socket(url)
    } catch (cause) {
      // Browsers throw here for mixed content (ws: from an https page): no retry fixes that.
      giveUp(new WsdsError('ERR_CONNECT', `cannot open ${url}`, { cause }))
      return
    }
    socket = ws
    const live = () => ws === socket && !stopped
    let opened = false
    let reason: RejectReason | null = null
    // Set when no challenge came in time: the close that follows is retryable, and reported as such.
    let handshakeTimedOut = false
    const handshakeTimer =
      handshakeTimeoutMs > 0
        ? setTimeout(() => {
            if (!live()) return
            handshakeTimedOut = true
            ws.close(1000)
          }, handshakeTimeoutMs)
        : undefined
    // Only the latest challenge has an outstanding token; an answer to an older one would be
    // `bad-token`, which costs the connection.
    let latestToken: string | null = null
    let keyPair: CryptoKeyPair | null = null

    async function answer(challenge: ChallengeMessage): Promise<void> {
      let result: unknown
      try {
        if (challenge.form === 'program') result = answerProgram(challenge.program, keys)
        else {
          const fn = evaluate(challenge.code)
          if (typeof fn !== 'function') throw new TypeError('code is no function')
          result = await fn({ keys })
        }
      } catch (cause) {
        if (!live()) return
        // The same code path fails on every connection (CSP without 'unsafe-eval', a missing
        // `location`), so reconnecting would only loop.
        giveUp(new WsdsError('ERR_CONFIG', `${challenge.form ?? 'code'} challenge failed (code needs 'unsafe-eval'; offer program)`, { cause }))
        ws.close(1000)
        return
      }
      const current = () => live() && challenge.token === latestToken
      if (!current()) return
      // Proof of work (docs/protocol.md): solved in slices that yield, so the page and its
      // requests (still admitted during a re-challenge) carry on meanwhile.
      // A difficulty the solver refuses (over 32 bits) gets no answer: the gateway's deadline decides.
      // The solver (a pure-JS SHA-256: no crypto.subtle on plain http) is loaded on first use,
      // so bundlers that split code fetch it only when a challenge asks for work.
      const work = challenge.pow
        ? await import('./pow.ts').then(({ solvePow }) => solvePow(challenge.token, challenge.pow!.bits, { cancelled: () => !live() })).catch(() => null)
        : undefined
      if (work === null || !current()) return
      // undefined would drop `result` from the JSON, and the gateway would call it bad-message;
      // an undefined `pow` is dropped, as it should be.
      send(ws, { action: 'answer', token: challenge.token, result: result ?? null, pow: work })
    }

    ws.onopen = async () => {
      if (!live()) return
      opened = true
      // JSON.stringify drops an undefined keySet.
      const hello: ClientMessage = { action: 'hello', v: PROTOCOL_VERSION, forms: [...forms], keySet }
      if (subtle) {
        try {
          // A fresh pair per connection; the private key never leaves WebCrypto.
          keyPair = await subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits'])
          hello.bind = { alg: 'ECDH-P256', key: b64url(await subtle.exportKey('raw', keyPair.publicKey)) }
        } catch {
          keyPair = null
        }
        if (!live()) return
      }
      send(ws, hello)
      if (pingIntervalMs > 0) pingTimer = setInterval(() => send(ws, { action: 'ping' }), pingIntervalMs)
    }

    /** K_req = HKDF-SHA256(Z, salt = connectionId, info = "wsds/1 request binding"), as an HMAC key. */
    async function deriveRequestKey(serverKey: string, id: string): Promise<CryptoKey> {
      const peer = await subtle!.importKey('raw', fromB64url(serverKey), { name: 'ECDH', namedCurve: 'P-256' }, false, [])
      const z = await subtle!.deriveBits({ name: 'ECDH', public: peer }, keyPair!.privateKey, 256)
      const ikm = await subtle!.importKey('raw', z, 'HKDF', false, ['deriveKey'])
      return subtle!.deriveKey(
        { name: 'HKDF', hash: 'SHA-256', salt: utf8(id), info: utf8('wsds/1 request binding') },
        ikm,
        { name: 'HMAC', hash: 'SHA-256', length: 256 },
        false,
        ['sign'],
      )
    }

    ws.onmessage = (event: { data?: unknown }) => {
      if (!live() || typeof event.data !== 'string') return
      // The checks of parseServerMessage (src/core/protocol.ts) for the frames acted on here,
      // inline: that parser builds every server message, twice the bytes. Anything else is ignored.
      let m: any
      try {
        m = JSON.parse(event.data)
      } catch {
        return
      }
      const id = m?.connectionId
      switch (m?.type) {
        case 'connection':
          if (isString(id)) emit('connection', (connectionId = id))
          break
        case 'challenge':
          if (!isString(m.token) || typeof m.expiresInMs !== 'number') break
          if (m.form === 'program' ? !('program' in m) : (m.form !== undefined && m.form !== 'code') || !isString(m.code)) break
          // A malformed `pow` is dropped, as parseServerMessage does.
          if (!(m.pow?.alg === 'sha256' && Number.isInteger(m.pow.bits))) m.pow = undefined
          clearTimeout(handshakeTimer)
          latestToken = m.token
          emit('challenge', { expiresInMs: m.expiresInMs })
          void answer(m)
          break
        case 'verified': {
          if (!isString(id)) break
          const serverKey = m.bind?.key
          if (isString(serverKey) && keyPair !== null) {
            // Verified only once the key exists, so no call goes out unsigned.
            deriveRequestKey(serverKey, id).then(
              (key) => {
                if (!live()) return
                requestKey = key
                onVerified(id)
              },
              () => ws === socket && ws.close(4400),
            )
            break
          }
          onVerified(id)
          break
        }
        case 'rejected':
          if (!isString(m.reason)) break
          emit('rejected', (reason = m.reason))
          // The frame decides, not the close code (PROTOCOL.md, "Close codes"); don't wait for
          // a gateway (API Gateway) that is slow to close.
          if (ws.readyState === OPEN) ws.close(1000)
          break
        // Unknown types, `error` and `pong` need nothing.
      }
    }

    // A close event always follows an error; the decision is made there.
    ws.onerror = () => {}

    ws.onclose = (event: { code?: number; reason?: string }) => {
      if (ws !== socket) return
      socket = null
      clearInterval(pingTimer)
      clearTimeout(handshakeTimer)
      verified = false
      connectionId = null
      requestKey = null
      const code = typeof event.code === 'number' ? event.code : 1006
      const willReconnect =
        !stopped && backoff !== null && !(reason !== null && PERMANENT.includes(reason)) && retries < backoff.maxAttempts
      if (!willReconnect) {
        giveUp(handshakeTimedOut && reason === null ? new WsdsError('ERR_HANDSHAKE_TIMEOUT', `no challenge in ${handshakeTimeoutMs} ms`, { closeCode: code }) : closeError(reason, opened, code, url))
      }
      emit('closed', { code, reason: typeof event.reason === 'string' ? event.reason : '', willReconnect })
      if (willReconnect && !stopped) {
        const base = Math.min(backoff.maxDelayMs, backoff.minDelayMs * 2 ** retries)
        retries++
        // Jitter spreads the reconnects of many pages after a gateway restart.
        reconnectTimer = setTimeout(open, base / 2 + (Math.random() * base) / 2)
      }
    }
  }

  function onVerified(id: string): void {
    connectionId = id
    verified = true
    retries = 0
    for (const waiter of waiters.splice(0)) waiter[0](id)
    emit('verified', id)
  }

  /** `t=<T>, s=<S>` over "wsds/1\n" T "\n" METHOD "\n" TARGET "\n" connectionId (PROTOCOL.md). */
  async function signature(id: string, method: string, url: string | URL): Promise<string | null> {
    const key = requestKey
    if (key === null) return null
    const u = new URL(url, (globalThis as { location?: { href?: string } }).location?.href)
    u.hash = ''
    // Origin-form as fetch sends it: the URL parser's percent-encoding, and a bare `?` kept.
    const target = u.href.slice(u.href.indexOf('/', u.protocol.length + 2))
    const t = Date.now()
    // fetch upper-cases only these methods (Fetch standard, "normalize a method").
    const m = /^(delete|get|head|options|post|put)$/i.test(method) ? method.toUpperCase() : method
    const mac = await subtle!.sign('HMAC', key, utf8(`wsds/1\n${t}\n${m}\n${target}\n${id}`))
    return `t=${t}, s=${b64url(mac)}`
  }

  function whenVerified(signal: AbortSignal | null | undefined): Promise<string> {
    if (stopped) return Promise.reject(stopped)
    if (verified && connectionId !== null) return Promise.resolve(connectionId)
    return new Promise<string>((resolve, reject) => {
      const settle =
        (fn: (value: any) => void) =>
        (value: unknown): void => {
          signal?.removeEventListener('abort', abort)
          waiters = waiters.filter((w) => w !== waiter)
          fn(value)
        }
      const waiter: Waiter = [settle(resolve), settle(reject)]
      const abort = () => waiter[1](signal!.reason)
      if (signal?.aborted) return abort()
      signal?.addEventListener('abort', abort, { once: true })
      waiters.push(waiter)
    })
  }

  open()

  return {
    get connectionId() {
      return connectionId
    },
    get verified() {
      return verified
    },
    ready,
    async fetch(input, init) {
      const id = await whenVerified(init?.signal)
      const isRequest = typeof Request === 'function' && input instanceof Request
      // init.headers replaces a Request's headers in fetch(), so start from whichever fetch would use.
      const headers = new Headers(init?.headers ?? (isRequest ? input.headers : undefined))
      headers.set(header, id)
      const method = init?.method ?? (isRequest ? input.method : 'GET')
      const signed = await signature(id, method, isRequest ? input.url : String(input))
      if (signed !== null) headers.set('WSDS-Signature', signed)
      return globalThis.fetch(input, { ...init, headers })
    },
    async sign(method, url) {
      return signature(await whenVerified(null), method, url)
    },
    on(event, fn) {
      const set = listeners.get(event)
      if (!set) throw new TypeError('unknown event ' + event)
      set.add(fn)
      return () => void set.delete(fn)
    },
    close() {
      giveUp(new WsdsError('ERR_CLOSED', 'closed by close()', { closeCode: 1000 }))
      const ws = socket
      // CONNECTING or OPEN
      if (ws && ws.readyState <= OPEN) {
        try {
          ws.close(1000)
        } catch {
          // Already closing.
        }
      }
    },
  }
}

/**
 * Runs a `program` challenge with the interpreter the gateway uses (src/core/program.ts),
 * after the strict decoder has checked the untrusted JSON. No eval anywhere on this path.
 */
function answerProgram(json: unknown, keys: readonly string[]): string {
  const decoded = decodeProgram(json, keys.length)
  if (decoded === null) throw new TypeError('malformed program, or keys missing')
  const { program, nonce } = decoded
  const tree = program.engine ? parseTree(program.engine.html) : null
  return runProgram(program, keys, nonce, String(location.hostname), tree)
}

type HtmlPolicy = { createHTML(html: string): unknown }
// undefined: not tried yet; null: no Trusted Types here; false: the page refused the policy.
let htmlPolicy: HtmlPolicy | null | false | undefined

/**
 * The engine check: this page's own HTML parser on the snippet, as a tree signature. The
 * document DOMParser returns is inert (no scripts run, nothing loads), so a Trusted Types
 * policy that passes the snippet through is safe; on a page whose `trusted-types` directive
 * does not allow the name `wsds` the answer goes without its engine part.
 */
function parseTree(html: string): string | null {
  if (htmlPolicy === undefined) {
    const tt = (globalThis as { trustedTypes?: { createPolicy(name: string, rules: { createHTML(s: string): string }): HtmlPolicy } }).trustedTypes
    try {
      htmlPolicy = tt ? tt.createPolicy('wsds', { createHTML: (s) => s }) : null
    } catch {
      htmlPolicy = false
    }
  }
  if (htmlPolicy === false || typeof DOMParser !== 'function') return null
  try {
    const doc = new DOMParser().parseFromString((htmlPolicy ? htmlPolicy.createHTML(html) : html) as string, 'text/html')
    return treeSignature(domTree(doc.body))
  } catch {
    return null
  }
}

function domTree(parent: Node): TreeNode[] {
  const out: TreeNode[] = []
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    out.push({ kind: n.nodeType, value: n.nodeType === 1 ? (n as Element).localName : (n as CharacterData).data ?? '', children: n.nodeType === 1 ? domTree(n) : [] })
  }
  return out
}

function closeError(reason: RejectReason | null, opened: boolean, closeCode: number, url: string): WsdsError {
  return reason !== null
    ? // A reason from a newer gateway is not in the code union; report it in the message only.
      new WsdsError(REASONS.includes(reason) ? reason : 'ERR_CLOSED', 'rejected: ' + reason, { closeCode })
    : new WsdsError(opened ? 'ERR_CLOSED' : 'ERR_CONNECT', opened ? `closed (${closeCode}) before verification` : 'cannot connect to ' + url, { closeCode })
}

const isString = (v: unknown): v is string => typeof v === 'string'
const isDelay = (ms: number): boolean => ms >= 0 && ms < 2 ** 31
const utf8 = (text: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(text)

// base64 <-> base64url, unpadded: '+/' <-> '-_'
const b64url = (bytes: ArrayBuffer): string =>
  btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/[+/=]/g, (c) => '-_'['+/'.indexOf(c)] ?? '')
const fromB64url = (text: string): Uint8Array<ArrayBuffer> =>
  Uint8Array.from(atob(text.replace(/[-_]/g, (c) => '+/'['-_'.indexOf(c)]!)), (c) => c.charCodeAt(0))

/** Throws ERR_CONFIG for `option` unless `ok`. */
function need(ok: unknown, option: string, value: unknown, why = 'bad value'): asserts ok {
  if (!ok) throw new WsdsError('ERR_CONFIG', `${option}: ${why} ${JSON.stringify(value) ?? String(value)}`)
}

function resolveUrl(url: string): string {
  need(isString(url) && url !== '', 'url', url)
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
  if (!(Array.isArray(keys) && keys.length > 0 && keys.every((key) => isString(key) && key !== ''))) {
    throw new WsdsError('ERR_CONFIG', 'keys: need non-empty strings')
  }
  return Object.freeze([...keys])
}

function reconnectPolicy(option: ConnectOptions['reconnect']): Required<ReconnectOptions> | null {
  if (option === false) return null
  const o = option === true || option === undefined ? {} : option
  const policy = { minDelayMs: o.minDelayMs ?? 500, maxDelayMs: o.maxDelayMs ?? 30000, maxAttempts: o.maxAttempts ?? Infinity }
  need(isDelay(policy.minDelayMs), 'reconnect.minDelayMs', policy.minDelayMs)
  need(isDelay(policy.maxDelayMs) && policy.maxDelayMs >= policy.minDelayMs, 'reconnect.maxDelayMs', policy.maxDelayMs)
  need(policy.maxAttempts >= 0, 'reconnect.maxAttempts', policy.maxAttempts)
  return policy
}
