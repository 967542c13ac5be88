/** Lambda entry: `$connect` (Origin allowlist, pending record). */
import { depsFromEnv } from '../deps.ts'
import type { WebSocketEvent } from '../events.ts'
import { createWebSocketHandlers } from '../websocket.ts'

const handlers = createWebSocketHandlers(depsFromEnv(process.env))
export const handler = (event: WebSocketEvent) => handlers.connect(event)
