/** Starts the real standalone server in-process on an ephemeral port, for tests. */
import { pino } from 'pino'
import { generateKeySet, type KeySet } from '../../src/core/keyset.ts'
import { createRandomPool } from '../../src/core/random.ts'
import { loadConfig, type ServerConfig } from '../../src/server/config.ts'
import { startServer, type RunningServer, type StartOptions } from '../../src/server/server.ts'
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
