/**
 * What a lost `$disconnect` leaves behind on AWS (API Gateway calls it best effort), on the
 * local emulation with `dropDisconnects`: the socket is gone but its record stays. The
 * authorizer's liveness check (GetConnection on every cache miss, src/aws/rest.ts) refuses
 * the id and deletes the record, so the bound is one authorizer TTL (docs/aws.md, "Lost
 * disconnects"). Also: the ids the page sees are ours, never API Gateway's.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startAwsLocal, type AwsLocal } from '../local/aws/stack.ts'
import { ALIAS_PREFIX } from '../src/aws/table.ts'
import { loadConfig } from '../src/server/config.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { TEST_ORIGIN, testKeySet } from './helpers/server.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'
import { GetItemCommand, ScanCommand } from '@aws-sdk/client-dynamodb'

const TTL_MS = 1000

describe('lost $disconnect on the AWS deployment (local emulation)', () => {
  let local: AwsLocal
  before(async () => {
    const base = loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_DEMO: 'off', WSDS_AUTH_CACHE_TTL_MS: String(TTL_MS) })
    local = await startAwsLocal({ ...base, keySets: [testKeySet] })
  })
  after(async () => {
    if (local) local.ws.dropDisconnects = false
    await local?.close()
  })
  const api = (connectionId: string) => fetch(`${local.url}/api/greeting`, { headers: { connectionId } }).then((r) => r.status)

  it('gives the page our own 128-bit id, while API Gateway\'s id (11 bytes, base64) only routes frames', async () => {
    const { client, connectionId } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    assert.match(connectionId, /^[A-Za-z0-9_-]{22}$/)
    const item = await local.dynamo.send(new GetItemCommand({ TableName: local.tableName, Key: { connectionId: { S: connectionId } }, ConsistentRead: true }))
    const gatewayId = item.Item?.gatewayId?.S ?? ''
    assert.match(gatewayId, /^[A-Za-z0-9+/]{15}=$/)
    // API Gateway's id admits nothing, even though its socket is verified.
    assert.equal(await api(gatewayId), 401)
    assert.equal(await api(connectionId), 200)
    await client.close()
  })

  it('stops admitting a verified id whose $disconnect was lost within the authorizer TTL, and deletes its record', async () => {
    const { client, connectionId } = await verifiedHandshake(local.wsUrl, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    assert.equal(await api(connectionId), 200)
    const before = local.counters.lambda.disconnect?.invocations ?? 0
    local.ws.dropDisconnects = true
    try {
      const closedAt = performance.now()
      await client.close()
      await eventually(() => local.ws.openConnections === 0, 2000, 'socket closed')
      assert.equal(local.counters.lambda.disconnect?.invocations ?? 0, before, '$disconnect was not called')
      assert.equal((await local.store.get(connectionId))?.status, 'verified', 'the record outlived its socket')
      await eventually(async () => (await api(connectionId)) === 401, TTL_MS + 2000, '401 after the lost disconnect')
      assert.ok(performance.now() - closedAt <= TTL_MS + 2000)
      await eventually(async () => (await local.store.get(connectionId)) === null, 2000, 'record deleted by the authorizer')
      const left = await local.dynamo.send(new ScanCommand({ TableName: local.tableName, ConsistentRead: true }))
      assert.ok(!(left.Items ?? []).some((i) => i.connectionId?.S?.startsWith(ALIAS_PREFIX) && i.target?.S === connectionId), 'alias deleted too')
    } finally {
      local.ws.dropDisconnects = false
    }
  })
})
