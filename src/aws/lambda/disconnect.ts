/** Lambda entry: `$disconnect` (delete the record and its alias, end an armed wait). */
import { depsFromEnv } from '../deps.ts'
import type { WebSocketEvent } from '../events.ts'
import { createWebSocketHandlers } from '../websocket.ts'

const handlers = createWebSocketHandlers(depsFromEnv(process.env))
export const handler = (event: WebSocketEvent) => handlers.disconnect(event)
