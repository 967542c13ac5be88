/**
 * The PROTOCOL.md extensions against the AWS deployment run locally: the challenge forms
 * (code, program, unsupported-form) and request binding, through the same suites the
 * self-hosted gateway runs (test/forms.test.ts, test/binding.test.ts). The Lambda handlers
 * drive the core lifecycle, so they speak the extensions with the same rules.
 */
import { startAwsLocal } from '../local/aws/stack.ts'
import { loadConfig } from '../src/server/config.ts'
import { bindingSuite } from './contracts/binding-suite.ts'
import { formsSuite } from './contracts/forms-suite.ts'
import { FORBIDDEN_ORIGIN, TEST_ORIGIN, olderKeySet, testKeySet } from './helpers/server.ts'

// The authorizer cache is off: a bound request's signature covers its method and target, so
// an admission must not be reused by id alone (docs/aws.md, "Request binding on AWS").
const base = (env: Record<string, string> = {}) =>
  loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_DEMO: 'off', WSDS_AUTH_CACHE_TTL_MS: '0', ...env })

formsSuite('AWS deployment (local emulation)', async ({ challengeTimeoutMs, challengeForms }) => {
  const local = await startAwsLocal({ ...base(), keySets: [testKeySet, olderKeySet], challengeTimeoutMs, challengeForms: [...challengeForms] })
  return {
    wsUrl: local.wsUrl,
    httpUrl: local.url,
    origin: TEST_ORIGIN,
    forbiddenOrigin: FORBIDDEN_ORIGIN,
    keySet: testKeySet,
    olderKeySet,
    protectedPath: '/api/greeting?who=Test',
    challengeTimeoutMs,
    exactCloseCodes: false,
    closesOnBadFrameFlood: false,
    close: () => local.close(),
  }
})

bindingSuite('AWS deployment (local emulation)', async ({ binding }) => {
  const config = base({ WSDS_BINDING: binding })
  const local = await startAwsLocal({ ...config, keySets: [testKeySet, olderKeySet] })
  return {
    wsUrl: local.wsUrl,
    restUrl: local.url,
    origin: TEST_ORIGIN,
    keySet: testKeySet,
    protectedPath: '/api/greeting?who=Test',
    windowMs: config.bindingWindowMs,
    exactCloseCodes: false,
    close: () => local.close(),
  }
})
