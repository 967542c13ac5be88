/** `wsds/gateway`: the WebSocket endpoint for node:http / https servers. */
export { attachGateway, createGateway, refuseUpgrade } from './gateway.ts'
export type { Gateway, GatewayOptions, GatewayLogger } from './gateway.ts'
export { createRateLimiter } from './rate-limit.ts'
export type { RateLimiter, RateLimiterOptions } from './rate-limit.ts'
export type { HandshakeObserver } from '../core/observer.ts'
export { createKeyRing } from '../core/keyring.ts'
export { generateKeySet, parseKeySet } from '../core/keyset.ts'
