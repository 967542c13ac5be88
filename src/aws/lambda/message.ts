/** Lambda entry: the `ping` and `$default` routes (pong, bad-message). */
import { depsFromEnv } from '../deps.ts'
import type { WebSocketEvent } from '../events.ts'
import { createWebSocketHandlers } from '../websocket.ts'

const handlers = createWebSocketHandlers(depsFromEnv(process.env, { connections: true }))
export const handler = (event: WebSocketEvent) => handlers.message(event)
