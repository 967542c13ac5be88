import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { startTestServer, testKeySet, TEST_ORIGIN } from './helpers/server.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

describe('engine-check metrics', () => {
  it('counts engine verdicts by browser family in wsds_engine_checks_total (monitor by default)', async () => {
    const s = await startTestServer()
    try {
      const a = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys, forms: ['program'] })
      const b = await verifiedHandshake(s.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      await a.client.close()
      await b.client.close()
      const text = await fetch(`${s.url}/metrics`).then((r) => r.text())
      // Node's ws client sends no User-Agent: family "other".
      assert.match(text, /wsds_engine_checks_total\{[^}]*family="other",verdict="match"[^}]*\} 2/)
      assert.match(text, /wsds_engine_checks_total\{[^}]*family="chromium",verdict="mismatch"[^}]*\} 0/)
    } finally {
      await s.close()
    }
  })
})
