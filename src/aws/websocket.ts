/**
 * WebSocket route handlers (API Gateway WebSocket API). Thin adapters: the Origin check is
 * core's policy, and every frame runs through core's lifecycle (src/aws/session.ts), so the
 * self-hosted gateway and AWS cannot disagree on the protocol.
 *
 * Ids: `$connect` mints our own 128-bit id (PROTOCOL.md, Sequence 2); API Gateway's
 * connection id is a routing handle that stays in the record (src/aws/table.ts).
 *
 * Differences from the self-hosted gateway, all allowed by PROTOCOL.md: the deadline counts
 * from the upgrade as self-hosted, but the wait that enforces it is armed at `hello`, so a
 * socket that never says hello is not closed at the deadline (it holds a pending record,
 * which admits nothing, until API Gateway's idle timeout); close codes are best effort.
 */
import { newId, openConnection } from '../core/lifecycle.ts'
import { createOriginPolicy } from '../core/origin.ts'
import { CloseCode } from '../core/protocol.ts'
import type { AwsDeps } from './deps.ts'
import { header, type WebSocketEvent, type WebSocketResult } from './events.ts'
import { createSessionDriver, TASK_OVER } from './session.ts'
import { SendTaskSuccessCommand } from '@aws-sdk/client-sfn'

export const OK: WebSocketResult = { statusCode: 200 }

export interface WebSocketHandlers {
  connect(event: WebSocketEvent): Promise<WebSocketResult>
  disconnect(event: WebSocketEvent): Promise<WebSocketResult>
  /** Every message ($default route): the frame decides. */
  message(event: WebSocketEvent): Promise<WebSocketResult>
}

export function createWebSocketHandlers(deps: AwsDeps): WebSocketHandlers {
  const { config, connections, table, sfn, now, log } = deps
  const origins = createOriginPolicy(config.allowedOrigins)
  const driver = createSessionDriver(deps)

  return {
    async connect(event) {
      const gatewayId = event.requestContext.connectionId
      const origin = header(event.headers, 'origin')
      // PROTOCOL.md 1: no socket for a missing or foreign Origin (API Gateway answers 403).
      const hostname = origins.check(origin)
      if (hostname === null) {
        log({ event: 'upgrade-refused', reason: 'origin', origin: origin ?? null })
        return { statusCode: 403 }
      }
      const t = now()
      const id = newId(deps.random)
      const { state } = openConnection({ connectionId: id, origin: origin!, hostname, now: t, timeoutMs: config.challengeTimeoutMs })
      const record = { connectionId: id, status: 'pending' as const, origin: origin!, createdAt: t, expiresAt: t + config.connectionTtlMs }
      await table.create(record, gatewayId, state, config.connectionTtlMs)
      return OK
    },

    async disconnect(event) {
      const old = await table.removeByGateway(event.requestContext.connectionId)
      // Ends a wait that nothing can answer any more, rather than leaving it to its timeout.
      if (old?.taskToken != null) {
        try {
          await sfn.send(new SendTaskSuccessCommand({ taskToken: old.taskToken, output: '{"disconnected":true}' }))
        } catch (err) {
          if (!TASK_OVER.has((err as Error).name)) throw err
        }
      }
      return OK
    },

    async message(event) {
      const gatewayId = event.requestContext.connectionId
      const body = event.body ?? ''
      // PROTOCOL.md Transport: over the limit closes with 1009 (API Gateway's own limit is higher).
      const size = event.isBase64Encoded ? Math.floor((body.length * 3) / 4) : Buffer.byteLength(body)
      if (size > config.maxPayloadBytes) {
        await connections.close(gatewayId, CloseCode.tooLarge)
        return OK
      }
      const id = await table.resolve(gatewayId)
      if (id === null) return OK
      await driver.run(id, event.isBase64Encoded ? { type: 'binary' } : { type: 'text', text: body })
      return OK
    },
  }
}
