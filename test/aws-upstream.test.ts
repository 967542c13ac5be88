/** aws:local honours WSDS_UPSTREAM like npm start: /api/* goes to that service after the authorizer. */
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, it } from 'node:test'
import { startAwsLocal } from '../local/aws/stack.ts'
import { loadConfig } from '../src/server/config.ts'
import { TEST_ORIGIN, testKeySet } from './helpers/server.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

describe('aws:local with WSDS_UPSTREAM', () => {
  it('proxies admitted /api/* requests to the upstream with the connection headers, and refuses others before it', async () => {
    const seen: Array<{ url: string; id: string | undefined; verdict: string | undefined }> = []
    const upstream = createServer((req, res) => {
      seen.push({ url: req.url ?? '', id: req.headers['x-wsds-connection-id'] as string, verdict: req.headers['x-wsds-verdict'] as string })
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"from":"upstream"}')
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
    const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_DEMO: 'off', WSDS_UPSTREAM: upstreamUrl })
    const local = await startAwsLocal({ ...base, keySets: [testKeySet] })
    try {
      const { client, connectionId } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
      const res = await fetch(`${local.url}/api/orders/7?x=1`, { headers: { connectionId } })
      assert.equal(res.status, 200)
      assert.deepEqual(await res.json(), { from: 'upstream' })
      assert.deepEqual(seen, [{ url: '/orders/7?x=1', id: connectionId, verdict: 'allow' }])
      assert.equal((await fetch(`${local.url}/api/orders/7`)).status, 401)
      assert.equal(seen.length, 1, 'refused requests never reach the upstream')
      await client.close()
    } finally {
      await local.close()
      upstream.closeAllConnections()
      await new Promise((r) => upstream.close(r))
    }
  })
})
