/**
 * Request binding through the shipped proxy configurations (deploy/), run for real: nginx's
 * auth_request and Caddy's forward_auth hand the gateway the signature and the original
 * method and request-target, so a signed call passes and the same id replayed without its
 * signature is refused.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { startGreetingServer } from '../src/demo/greeting.ts'
import { boundHandshake, type BindingTarget } from './contracts/binding-suite.ts'
import { caddyBinary, nginxBinary, startCaddy, startNginx, type RunningProxy } from './helpers/proxies.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { freePort } from './helpers/services.ts'

for (const [name, binary, start] of [
  ['nginx', nginxBinary, startNginx],
  ['Caddy', caddyBinary, startCaddy],
] as const) {
  describe(`request binding behind ${name} (deploy/)`, { skip: binary.skip }, () => {
    let gateway: TestServer
    let upstream: { url: string; close(): Promise<void> }
    let proxy: RunningProxy
    before(async () => {
      gateway = await startTestServer({ idRateLimit: 2 })
      upstream = await startGreetingServer()
      proxy = await start({ gateway: `127.0.0.1:${gateway.port}`, upstream: new URL(upstream.url).host })
    })
    after(async () => {
      await proxy?.stop()
      await upstream?.close()
      await gateway?.close()
    })
    const target = (): BindingTarget => ({
      wsUrl: gateway.wsUrl,
      restUrl: proxy.url,
      origin: TEST_ORIGIN,
      keySet: testKeySet,
      protectedPath: '/api/greeting?who=Ada%20L',
      windowMs: 30_000,
      exactCloseCodes: true,
      close: async () => {},
    })

    it('passes a signed request and refuses the id replayed without its signature, or for another target', async () => {
      const t = target()
      const a = await boundHandshake(t)
      const signed = await fetch(proxy.url + t.protectedPath, { headers: { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', t.protectedPath) } })
      assert.equal(signed.status, 200, proxy.output().slice(-2000))
      assert.deepEqual(await signed.json(), { greeting: 'Hello, Ada L!' })
      const replayed = await fetch(proxy.url + t.protectedPath, { headers: { connectionId: a.connectionId } })
      assert.equal(replayed.status, 401)
      assert.deepEqual(await replayed.json(), { error: 'unauthorized' })
      const moved = await fetch(proxy.url + '/api/greeting?who=Eve', { headers: { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', t.protectedPath) } })
      assert.equal(moved.status, 401)
      await moved.arrayBuffer()
      await a.client.close()
    })

    it('answers over the per-connection quota with the gateway\'s 429, body and Retry-After', async () => {
      const t = target()
      const a = await boundHandshake(t)
      const statuses: number[] = []
      let refused: Response | undefined
      for (let i = 0; i < 8 && refused === undefined; i++) {
        const res = await fetch(proxy.url + t.protectedPath, { headers: { connectionId: a.connectionId, 'WSDS-Signature': await a.sign('GET', t.protectedPath) } })
        statuses.push(res.status)
        if (res.status === 429) refused = res
        else await res.arrayBuffer()
      }
      assert.deepEqual(statuses.slice(0, 4), [200, 200, 200, 200], 'a burst of 2N passes')
      assert.ok(refused, `refused after the burst: ${statuses}`)
      assert.deepEqual(await refused.json(), { error: 'rate-limited' })
      assert.match(refused.headers.get('retry-after') ?? '', /^[1-9]\d*$/)
      await a.client.close()
    })
  })
}
