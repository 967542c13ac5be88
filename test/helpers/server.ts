/** Starts the real standalone server in-process on an ephemeral port, for tests. */
import { pino } from 'pino'
import { WsdsError } from '../../src/core/errors.ts'
import { generateKeySet, type KeySet } from '../../src/core/keyset.ts'
import { createRandomPool } from '../../src/core/random.ts'
import { loadConfig, type ServerConfig } from '../../src/server/config.ts'
import { startServer, type RunningServer, type StartOptions } from '../../src/server/server.ts'
import type { Store } from '../../src/core/store.ts'
import { createMemoryStore } from '../../src/stores/memory.ts'
import type { ProtocolTarget } from '../contracts/protocol-suite.ts'

export const TEST_ORIGIN = 'http://app.wsds.test'
export const FORBIDDEN_ORIGIN = 'http://evil.wsds.test'

const random = createRandomPool()
export const testKeySet: KeySet = generateKeySet(random, { id: 'test-current' })
export const olderKeySet: KeySet = generateKeySet(random, { id: 'test-older' })

export interface TestServer extends RunningServer {
  wsUrl: string
}

export async function startTestServer(overrides: Partial<ServerConfig> = {}, options: StartOptions = {}): Promise<TestServer> {
  const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_RATE_LIMIT: 'off', WSDS_DEMO: 'off' })
  const config: ServerConfig = { ...base, keySets: [testKeySet, olderKeySet], ...overrides }
  const running = await startServer(config, { logger: pino({ level: 'silent' }), ...options })
  return Object.assign(running, { wsUrl: running.url.replace('http', 'ws') + '/wsds' })
}

export async function startTarget(options: { challengeTimeoutMs: number }): Promise<ProtocolTarget> {
  const s = await startTestServer({ challengeTimeoutMs: options.challengeTimeoutMs })
  return {
    wsUrl: s.wsUrl,
    httpUrl: s.url,
    origin: TEST_ORIGIN,
    forbiddenOrigin: FORBIDDEN_ORIGIN,
    keySet: testKeySet,
    olderKeySet,
    protectedPath: '/api/greeting?who=Test',
    challengeTimeoutMs: options.challengeTimeoutMs,
    exactCloseCodes: true,
    closesOnBadFrameFlood: true,
    countRecords: async () => (s.store as { size?: number }).size ?? 0,
    close: () => s.close(),
  }
}

/** A memory store whose reads can be made to fail, as an unreachable Redis would. */
export function switchableStore(): { store: Store; state: { down: boolean } } {
  const inner = createMemoryStore()
  const state = { down: false }
  const store: Store = {
    put: (record, options) => inner.put(record, options),
    get: async (id) => {
      if (state.down) throw new WsdsError('ERR_STORE_UNAVAILABLE', 'test: store switched off')
      return inner.get(id)
    },
    delete: (id) => inner.delete(id),
    renew: (ids, options) => inner.renew(ids, options),
    onDelete: (listener) => inner.onDelete(listener),
    onReset: (listener) => inner.onReset(listener),
    onStatus: (listener) => inner.onStatus(listener),
    close: () => inner.close(),
  }
  return { store, state }
}
