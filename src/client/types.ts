/**
 * The SDK's public types (re-exported by ./index.ts, `wsds/client`): options, the session and
 * its events, and the part of a WebSocket the SDK uses.
 */
import type { ChallengeForm, RejectReason } from '../core/protocol.ts'

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
