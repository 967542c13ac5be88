/**
 * WebSocket route handlers (API Gateway WebSocket API, route selection
 * `$request.body.action`). Thin adapters: parsing, the Origin check, the answer check and the
 * wire messages all come from core; these only read and write DynamoDB, post through
 * `@connections` and talk to Step Functions.
 *
 * Differences from the self-hosted gateway, all allowed by PROTOCOL.md: the deadline counts
 * from `hello` (the execution's start), not from the upgrade; close codes are best effort;
 * bad frames are not counted towards a 4400 close (the MAY in Transport).
 */
import { SendTaskFailureCommand, SendTaskSuccessCommand, StartExecutionCommand } from '@aws-sdk/client-sfn'
import { checkAnswer } from '../core/challenge.ts'
import { CloseCode, PROTOCOL_VERSION, closeCodeFor, parseClientMessage, type RejectReason } from '../core/protocol.ts'
import { createOriginPolicy } from '../gateway/origin.ts'
import type { AwsDeps } from './deps.ts'
import { header, type WebSocketEvent, type WebSocketResult } from './events.ts'

export const OK: WebSocketResult = { statusCode: 200 }

/** Input of one execution of the handshake state machine. */
export interface ExecutionInput {
  connectionId: string
  keySetId: string
  hostname: string
  timeoutMs: number
}

/** Output of the answer handler's SendTaskSuccess, read by the state machine's Choice. */
export interface AnswerVerdict {
  verdict: 'verified'
}

/**
 * Execution names allow `[A-Za-z0-9-_]` only (at most 80): API Gateway ids are base64
 * (`+`, `/`, `=`), ours base64url. `+` -> `-` and `/` -> `_` is one-to-one on base64 ids,
 * and the time suffix keeps names unique when a connection is challenged again.
 */
export function executionName(connectionId: string, now: number): string {
  return `${connectionId.replace(/\+/g, '-').replace(/\//g, '_').replace(/[^A-Za-z0-9_-]/g, '').slice(0, 60)}-${now}`
}

/** Errors of SendTask* meaning the wait is over (timed out, or the execution ended). */
const TASK_OVER = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken'])

export interface WebSocketHandlers {
  connect(event: WebSocketEvent): Promise<WebSocketResult>
  disconnect(event: WebSocketEvent): Promise<WebSocketResult>
  /** Every MESSAGE route (hello, answer, ping, $default): the frame decides, the route only selects. */
  message(event: WebSocketEvent): Promise<WebSocketResult>
}

export function createWebSocketHandlers(deps: AwsDeps): WebSocketHandlers {
  const { config, connections, table, sfn, now, log } = deps
  const origins = createOriginPolicy(config.allowedOrigins)

  const reject = async (id: string, reason: RejectReason) => {
    await connections.post(id, { type: 'rejected', reason })
    await connections.close(id, closeCodeFor(reason))
    log({ event: 'outcome', connectionId: id, outcome: reason })
  }
  const badMessage = (id: string, message: string) => connections.post(id, { type: 'error', code: 'bad-message', message })

  const hello = async (id: string, v: number, keySet: string | undefined) => {
    const ring = await deps.keyRing()
    const resolved = ring.resolve(keySet)
    const item = await table.markHello(id, resolved?.id ?? keySet ?? '')
    if (item === null) return void (await badMessage(id, 'hello was already received on this connection'))
    if (v !== PROTOCOL_VERSION) return reject(id, 'unsupported-version')
    if (!(await connections.post(id, { type: 'connection', connectionId: id }))) return
    if (resolved === null) return reject(id, 'stale-keyset')
    const input: ExecutionInput = {
      connectionId: id,
      keySetId: resolved.id,
      hostname: new URL(item.origin).hostname,
      timeoutMs: config.challengeTimeoutMs,
    }
    // No sleep: the execution's first state draws and sends the challenge at once.
    await sfn.send(new StartExecutionCommand({ stateMachineArn: config.stateMachineArn, name: executionName(id, now()), input: JSON.stringify(input) }))
    log({ event: 'hello', connectionId: id, keySetId: resolved.id })
  }

  const answer = async (id: string, token: string, result: unknown) => {
    const spent = await table.spendChallenge(id, token)
    // Any token but the outstanding one is fatal, on a verified connection too (PROTOCOL.md 7).
    if (spent === null) return reject(id, 'bad-token')
    let sent: { ok: true } | { ok: false; reason: 'wrong-answer' | 'bad-domain' | 'timeout' }
    if (now() > spent.deadlineAt) sent = { ok: false, reason: 'timeout' }
    else sent = checkAnswer(spent.expected, result)
    try {
      if (sent.ok) {
        const output: AnswerVerdict = { verdict: 'verified' }
        await sfn.send(new SendTaskSuccessCommand({ taskToken: spent.taskToken, output: JSON.stringify(output) }))
      } else {
        // The state machine posts the rejection: one place closes failed handshakes.
        await sfn.send(new SendTaskFailureCommand({ taskToken: spent.taskToken, error: sent.reason, cause: 'answer check' }))
      }
    } catch (err) {
      // The wait timed out between our deadline check and now: its own timeout path may
      // already have closed the socket; if not, this does.
      if (TASK_OVER.has((err as Error).name)) return reject(id, 'timeout')
      throw err
    }
  }

  return {
    async connect(event) {
      const id = event.requestContext.connectionId
      const origin = header(event.headers, 'origin')
      // PROTOCOL.md 1: no socket for a missing or foreign Origin (API Gateway answers 403).
      if (origins.check(origin) === null) {
        log({ event: 'upgrade-refused', reason: 'origin', origin: origin ?? null })
        return { statusCode: 403 }
      }
      const t = now()
      await deps.store.put({ connectionId: id, status: 'pending', origin: origin!, createdAt: t, expiresAt: t + config.connectionTtlMs }, { ttlMs: config.connectionTtlMs })
      return OK
    },

    async disconnect(event) {
      const id = event.requestContext.connectionId
      const old = await table.remove(id)
      // Ends a wait that no answer can end any more, rather than leaving it to its timeout.
      if (old?.taskToken !== undefined) {
        try {
          await sfn.send(new SendTaskFailureCommand({ taskToken: old.taskToken, error: 'disconnected', cause: 'socket closed' }))
        } catch (err) {
          if (!TASK_OVER.has((err as Error).name)) throw err
        }
      }
      return OK
    },

    async message(event) {
      const id = event.requestContext.connectionId
      const body = event.isBase64Encoded ? Buffer.from(event.body ?? '', 'base64').toString('utf8') : (event.body ?? '')
      // PROTOCOL.md Transport: over the limit closes with 1009 (API Gateway's own limit is higher).
      if (Buffer.byteLength(body) > config.maxPayloadBytes) {
        await connections.close(id, CloseCode.tooLarge)
        return OK
      }
      if (event.isBase64Encoded) {
        await badMessage(id, 'binary frames are not part of the protocol')
        return OK
      }
      const parsed = parseClientMessage(body)
      if (!parsed.ok) {
        await badMessage(id, parsed.error)
        return OK
      }
      const m = parsed.message
      switch (m.action) {
        case 'ping':
          await connections.post(id, { type: 'pong' })
          break
        case 'hello':
          await hello(id, m.v, m.keySet)
          break
        case 'answer':
          await answer(id, m.token, m.result)
          break
      }
      return OK
    },
  }
}
