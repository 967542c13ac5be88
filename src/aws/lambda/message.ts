/** Lambda entry: the `$default` route, every client frame (the lifecycle decides). */
import { depsFromEnv } from '../deps.ts'
import type { WebSocketEvent } from '../events.ts'
import { createWebSocketHandlers } from '../websocket.ts'

const handlers = createWebSocketHandlers(depsFromEnv(process.env, { keys: true, stateMachine: true, connections: true }))
export const handler = (event: WebSocketEvent) => handlers.message(event)
