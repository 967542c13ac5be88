/**
 * One socket's session: the core lifecycle (src/core/lifecycle.ts `transition()`) driven by
 * the socket's frames and deadline, and the lifecycle's actions carried out on the socket
 * and the store. The handlers live on the prototype and on the socket class, not in
 * closures per socket: a handshake allocates the session and nothing per handler.
 */
import type { HandshakeObserver } from '../core/observer.ts'
import type { Duplex } from 'node:stream'
import { WebSocket, type RawData } from 'ws'
import { transition, type Action, type ConnectionState, type LifecycleContext, type LifecycleEvent, type Transition } from '../core/lifecycle.ts'
import { CloseCode, encodeServerMessage } from '../core/protocol.ts'
import type { ConnectionRecord } from '../core/store.ts'
import type { Deadlined } from './deadlines.ts'
import { logValue, shortHash, type GatewayLogger } from './log.ts'
import type { RecordKeeper } from './records.ts'
import type { BrowserFamily, GatewayStats } from './stats.ts'
import { peerAddress } from './upgrade.ts'

/** Events held while the verified record is being written, per socket. */
export const MAX_BACKLOG = 32
/**
 * Messages a client may send: a burst of 20, then 2 per second. A real page sends a hello,
 * an answer per challenge and a ping every 25 s; a flood is closed with 4429
 * (PROTOCOL.md, Close codes) before it can make the gateway work for it.
 */
export const MESSAGE_BURST = 20
export const MESSAGES_PER_SECOND = 2
/** Unsent bytes we hold for a client that does not read before dropping it. */
export const MAX_BUFFERED_BYTES = 256 * 1024

/**
 * The gateway's socket class (ws `WebSocketServer` option `WebSocket`): it carries its
 * session and heartbeat flag, and closes with 1009 where ws would close with 1008.
 */
export class GatewaySocket extends WebSocket {
  session: Session | null = null
  /** Answered the last heartbeat ping (or none was sent yet). */
  alive = true

  /**
   * ws closes a message of too many fragments (or buffered chunks) with 1008 before it tells
   * us why; PROTOCOL.md's close code table has no 1008: a message that never ends is a
   * message over the size limit, 1009. The gateway itself never closes with 1008.
   */
  override close(code?: number, data?: string | Buffer): void {
    super.close(code === 1008 ? 1009 : code, data)
  }
}

/** What a session needs from its gateway: one object per gateway, shared by its sessions. */
export interface SessionHost {
  now(): number
  readonly stats: GatewayStats
  /** Durations (core/observer.ts): the first verification of each connection. */
  readonly observer: HandshakeObserver
  readonly logger: GatewayLogger | undefined
  readonly records: RecordKeeper
  /** The lifecycle context for an event of this session, read now. */
  context(session: Session): LifecycleContext
  /** Arms (epoch ms) or clears (null) the session's deadline. */
  deadline(session: Session, at: number | null): void
  /** An outcome was reached (verified, or the reason it failed): re-challenges, proof of work. */
  settled(session: Session, result: Transition): void
  /** Is this session still the gateway's (not replaced, not closed)? */
  owns(session: Session): boolean
  /** The socket closed: forget the session. */
  forget(session: Session): void
}

export class Session implements Deadlined {
  state: ConnectionState
  record: ConnectionRecord
  /** Events that arrived while the verified record was being written; null when none is. */
  backlog: LifecycleEvent[] | null = null
  /** Message budget (token bucket): tokens left and when it was last topped up. */
  budget = MESSAGE_BURST
  budgetAt: number
  deadlineSlot = -1
  #remote: string | null

  constructor(
    readonly host: SessionHost,
    readonly ws: GatewaySocket,
    readonly socket: Duplex,
    record: ConnectionRecord,
    opened: Transition,
    /** Client address when admission already knew it (X-Forwarded-For, rate limiter); else looked up on demand. */
    remote: string | null,
    /** Browser family from the upgrade's User-Agent, for engine-check metrics. */
    readonly family: BrowserFamily,
  ) {
    this.record = record
    this.state = opened.state
    this.budgetAt = record.createdAt
    this.#remote = remote
    ws.session = this
    ws.on('message', onMessage)
    ws.on('error', onError)
    ws.on('pong', onPong)
    ws.on('close', onClose)
    this.run(opened)
  }

  get id(): string {
    return this.record.connectionId
  }

  /** Client address, for logs, limits and operator targets; asked of the socket the first time. */
  get remote(): string {
    return (this.#remote ??= peerAddress(this.socket))
  }

  /** A frame from the client, charged to its message budget. */
  receive(data: RawData, isBinary: boolean): void {
    if (!this.spend()) {
      const host = this.host
      host.stats.rateLimitedSockets++
      host.logger?.warn({ event: 'rejected', reason: 'message-rate', remote: logValue(this.remote), conn: shortHash(this.id) }, 'connection rejected')
      this.state = { ...this.state, phase: 'closed' }
      this.ws.close(CloseCode.rateLimited, 'too many messages')
      return
    }
    this.dispatch(isBinary ? { type: 'binary' } : { type: 'text', text: data.toString() })
  }

  spend(): boolean {
    if (this.state.phase === 'closed') return true
    const t = this.host.now()
    this.budget = Math.min(MESSAGE_BURST, this.budget + ((t - this.budgetAt) * MESSAGES_PER_SECOND) / 1000)
    this.budgetAt = t
    if (this.budget < 1) return false
    this.budget--
    return true
  }

  dispatch(event: LifecycleEvent): void {
    const backlog = this.backlog
    if (backlog !== null) {
      if (backlog.length >= MAX_BACKLOG) this.ws.close(CloseCode.rateLimited, 'too many messages')
      else backlog.push(event)
      return
    }
    this.run(transition(this.state, event, this.host.context(this)))
  }

  run(result: Transition): void {
    this.state = result.state
    const host = this.host
    if (result.engine !== undefined) host.stats.engineChecks[this.family][result.engine]++
    if (result.outcome !== undefined) {
      host.stats.outcomes[result.outcome]++
      host.settled(this, result)
      if (result.outcome !== 'verified') {
        // One line per rejection; the id only as a short hash, never the token or answer.
        host.logger?.warn({ event: 'rejected', reason: result.outcome, remote: logValue(this.remote), conn: shortHash(this.id) }, 'connection rejected')
      }
    }
    const actions = result.actions
    for (let i = 0; i < actions.length; i++) {
      const action = actions[i]!
      if (action.type === 'persist-verified') {
        this.persistThen(actions, i + 1, action.bindKey)
        return
      }
      this.act(action)
    }
  }

  act(action: Exclude<Action, { type: 'persist-verified' }>): void {
    switch (action.type) {
      case 'send':
        return this.send(action.message)
      case 'close':
        return this.ws.close(action.code, action.reason)
      case 'timer':
        return this.host.deadline(this, action.at)
    }
  }

  send(message: Extract<Action, { type: 'send' }>['message']): void {
    const stats = this.host.stats
    if (message.type === 'challenge') {
      stats.challengesIssued++
      const bits = message.pow?.bits
      if (bits !== undefined) stats.powIssued[bits] = (stats.powIssued[bits] ?? 0) + 1
    } else if (message.type === 'error') stats.badFrames++
    // A client that sends but never reads would make us hold its replies forever.
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES) this.ws.terminate()
    else this.ws.send(encodeServerMessage(message))
  }

  /** The deadline passed (the queue never fires early by the lifecycle's clock). */
  expire(): void {
    if (this.state.phase !== 'closed') this.dispatch({ type: 'deadline' })
  }

  /**
   * Writes the verified record, then carries out `actions` from `from` on (`verified`),
   * replaying the events that arrived meanwhile.
   */
  persistThen(actions: readonly Action[], from: number, bindKey: string | undefined): void {
    this.backlog = []
    const host = this.host
    const t = host.now()
    // Re-verifications are not handshakes: only the first verification is timed.
    const firstVerification = this.record.status === 'pending'
    this.record = host.records.verified(this.record, t, bindKey)
    host.records.put(this.record).then(
      () => {
        if (this.state.phase !== 'closed' && host.owns(this)) {
          if (firstVerification) host.observer.handshakeVerified((t - this.record.createdAt) / 1000)
          for (let i = from; i < actions.length; i++) {
            const action = actions[i]!
            if (action.type !== 'persist-verified') this.act(action)
          }
        }
        const backlog = this.backlog ?? []
        this.backlog = null
        for (const event of backlog) this.dispatch(event)
      },
      (cause: unknown) => {
        // Without the record no authenticator would admit the id: tell the client it failed
        // rather than sending a `verified` that nothing honours.
        host.stats.storeErrors++
        host.logger?.debug?.({ event: 'store-error', op: 'put', error: String(cause) }, 'could not store verified record')
        this.backlog = null
        this.state = { ...this.state, phase: 'closed' }
        this.ws.close(1011, 'store unavailable')
      },
    )
  }

  /** The socket closed: deadline off, session forgotten, record deleted. */
  closed(): void {
    const host = this.host
    host.deadline(this, null)
    host.forget(this)
    this.state = { ...this.state, phase: 'closed' }
    this.backlog = null
    host.stats.closed++
    void host.records.delete(this.id)
  }
}

// Shared handlers: `this` is the socket (EventEmitter calls listeners with the emitter).
function onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  ;(this as GatewaySocket).session?.receive(data, isBinary)
}
// ws reports oversized frames (it closes with 1009 itself) and protocol errors here;
// without a listener they would crash the process.
function onError(this: WebSocket, err: Error & { code?: string }): void {
  if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH' || err.code === 'WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH' || err.code === 'WS_ERR_TOO_MANY_BUFFERED_PARTS') {
    const stats = (this as GatewaySocket).session?.host.stats
    if (stats !== undefined) stats.oversizedFrames++
  }
}
function onPong(this: WebSocket): void {
  ;(this as GatewaySocket).alive = true
}
function onClose(this: WebSocket): void {
  ;(this as GatewaySocket).session?.closed()
}
