/**
 * The package root: the pure core's building blocks. Transports, stores, integrations and
 * the browser SDK are subpath exports (`wsds/gateway`, `wsds/stores/redis`, `wsds/express`,
 * `wsds/client`, ...), so an app loads only what it uses.
 */
export { WsdsError, isWsdsError } from './core/errors.ts'
export type { WsdsErrorCode } from './core/errors.ts'
export { PROTOCOL_VERSION, CloseCode, parseClientMessage, parseServerMessage, encodeServerMessage } from './core/protocol.ts'
export type { ClientMessage, ServerMessage, ChallengeMessage, RejectReason } from './core/protocol.ts'
export { generateKeySet, parseKeySet } from './core/keyset.ts'
export type { KeySet } from './core/keyset.ts'
export { createKeyRing } from './core/keyring.ts'
export type { KeyRing } from './core/keyring.ts'
export { createAuthenticator } from './core/authenticator.ts'
export type { Authenticator, AuthenticatorOptions } from './core/authenticator.ts'
export { createFront } from './core/front.ts'
export type { Front, FrontDecision, Mode, Verdict } from './core/front.ts'
export type { DecisionObserver, HandshakeObserver, MetricsObserver } from './core/observer.ts'
export { decideAccess, CONNECTION_ID_HEADER } from './core/access.ts'
export type { AccessDecision, AccessRequest, DenyReason } from './core/access.ts'
export { createRandomPool } from './core/random.ts'
export type { ConnectionRecord, Store, StoreStatus } from './core/store.ts'
export { compilePolicy, parsePolicy } from './core/policy.ts'
export type { Policy, PolicyAction, PolicyMatch, PolicySource, PolicySpec } from './core/policy.ts'
