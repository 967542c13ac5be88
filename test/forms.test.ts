import { formsSuite } from './contracts/forms-suite.ts'
import { FORBIDDEN_ORIGIN, olderKeySet, startTestServer, testKeySet, TEST_ORIGIN } from './helpers/server.ts'

formsSuite('self-hosted gateway', async ({ challengeTimeoutMs, challengeForms }) => {
  const s = await startTestServer({ challengeTimeoutMs, challengeForms: [...challengeForms] })
  return {
    wsUrl: s.wsUrl,
    httpUrl: s.url,
    origin: TEST_ORIGIN,
    forbiddenOrigin: FORBIDDEN_ORIGIN,
    keySet: testKeySet,
    olderKeySet,
    protectedPath: '/api/greeting?who=Test',
    challengeTimeoutMs,
    exactCloseCodes: true,
    closesOnBadFrameFlood: true,
    close: () => s.close(),
  }
})
