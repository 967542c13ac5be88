/**
 * The esbuild bundles (what Lambda runs): each entry builds to a CommonJS `.cjs`, loads on
 * Node 20 without the source tree, reads its configuration from the environment like the
 * Lambda runtime gives it, and reaches DynamoDB (dynalite) through the bundled SDK.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync } from 'node:fs'
import type { Server } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
// @ts-expect-error no declaration file
import dynalite from 'dynalite'
import { bundleLambdas } from '../infra/bundle.ts'
import { CODE_KEY_PATTERN, FUNCTIONS } from '../infra/stack.ts'
import { createConnectionsTable } from '../src/aws/table.ts'
import type { WebSocketEvent, WebSocketResult } from '../src/aws/events.ts'
import { createDynamoDbStore, ensureTable } from '../src/stores/dynamodb.ts'

describe('Lambda bundles (esbuild, CJS, node22 target)', () => {
  let server: Server
  let client: DynamoDBClient
  let outdir: string
  let files: Record<string, number>
  let zip: string
  before(async () => {
    server = (dynalite as (o: object) => Server)({ createTableMs: 0 })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    client = new DynamoDBClient({ endpoint, region: 'local', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } })
    await ensureTable(client, 'wsds-bundle')
    // What the stack sets, plus the SDK's standard endpoint override instead of real AWS.
    Object.assign(process.env, {
      WSDS_TABLE: 'wsds-bundle',
      WSDS_ALLOWED_ORIGINS: 'https://app.wsds.test',
      WSDS_CHALLENGE_TIMEOUT_MS: '10000',
      AWS_REGION: 'local',
      AWS_ACCESS_KEY_ID: 'x',
      AWS_SECRET_ACCESS_KEY: 'x',
      AWS_ENDPOINT_URL_DYNAMODB: endpoint,
    })
    ; ({ outdir, files, zip } = await bundleLambdas(mkdtempSync(join(tmpdir(), 'wsds-bundle-'))))
  })
  after(async () => {
    client?.destroy()
    await new Promise((r) => server?.close(r))
  })

  it('builds one .cjs per function of the stack', () => {
    assert.deepEqual(Object.keys(files).sort(), FUNCTIONS.map((f) => `${f}.cjs`).sort())
  })

  it('writes lambda-<content hash>.zip that unzip reads back, the same name for the same code (LambdaCodeKey)', async () => {
    assert.match(basename(zip), new RegExp(CODE_KEY_PATTERN))
    const listing = execFileSync('unzip', ['-Z1', zip], { encoding: 'utf8' }).trim().split('\n').sort()
    assert.deepEqual(listing.filter((f) => f.endsWith('.cjs')), FUNCTIONS.map((f) => `${f}.cjs`).sort())
    execFileSync('unzip', ['-tq', zip])
    const again = await bundleLambdas(mkdtempSync(join(tmpdir(), 'wsds-bundle-')))
    assert.equal(basename(again.zip), basename(zip))
    assert.ok(readFileSync(again.zip).equals(readFileSync(zip)), 'deterministic bytes')
  })

  it('runs the $connect bundle against DynamoDB: 403 for a foreign Origin, a pending record under our own id for an allowed one', async () => {
    const require = createRequire(join(outdir, 'x.cjs'))
    const { handler } = require('./connect.cjs') as { handler: (e: WebSocketEvent) => Promise<WebSocketResult> }
    const event = (connectionId: string, origin: string): WebSocketEvent => ({
      requestContext: { connectionId, routeKey: '$connect', eventType: 'CONNECT' },
      headers: { Origin: origin },
    })
    assert.equal((await handler(event('bundle-1=', 'https://evil.wsds.test'))).statusCode, 403)
    assert.equal((await handler(event('bundle-2=', 'https://app.wsds.test'))).statusCode, 200)
    const store = createDynamoDbStore({ client, tableName: 'wsds-bundle' })
    const table = createConnectionsTable(client, 'wsds-bundle')
    assert.equal(await table.resolve('bundle-1='), null)
    const id = await table.resolve('bundle-2=')
    assert.match(id ?? '', /^[A-Za-z0-9_-]{22}$/)
    assert.equal((await store.get(id!))?.status, 'pending')
  })

  it('runs the greeting bundle', async () => {
    const require = createRequire(join(outdir, 'x.cjs'))
    const { handler } = require('./greeting.cjs') as { handler: (e: object) => Promise<{ statusCode: number; body: string }> }
    assert.equal(JSON.parse((await handler({ httpMethod: 'GET', path: '/greeting', queryStringParameters: { who: 'Bundle' } })).body).greeting, 'Hello, Bundle!')
  })
})
