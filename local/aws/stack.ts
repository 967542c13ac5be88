/**
 * `npm run aws:local`: the AWS deployment on this machine. The real handler code
 * (src/aws/*) runs with API Gateway's event shapes, behind a local WebSocket API and REST
 * API (with the authorizer cache), against DynamoDB on dynalite and a local Step Functions
 * endpoint running the state machine of the committed template, all through the real AWS
 * SDK clients pointed at local endpoints. Test infrastructure, not product.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ApiGatewayManagementApiClient } from '@aws-sdk/client-apigatewaymanagementapi'
import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { SFNClient } from '@aws-sdk/client-sfn'
// dynalite has no types; it is a DynamoDB implementation served over HTTP in-process.
// @ts-expect-error no declaration file
import dynalite from 'dynalite'
import { Counter, Gauge, Registry } from 'prom-client'
import { createConnections } from '../../src/aws/connections.ts'
import { CONNECTION_TTL_MS, type AwsConfig } from '../../src/aws/config.ts'
import type { AwsDeps } from '../../src/aws/deps.ts'
import type { WebSocketEvent } from '../../src/aws/events.ts'
import { createAuthorizer, createGreeting } from '../../src/aws/rest.ts'
import { createCorsPolicy } from '../../src/core/cors.ts'
import { createReverseProxy } from '../../src/proxy/reverse-proxy.ts'
import { createConnectionsTable, ensureConnectionsTable } from '../../src/aws/table.ts'
import { createSweeper, sweepPeriodMs, type OperatorRechallenge, type Sweeper, type SweepResult } from '../../src/aws/sweeper.ts'
import { createTaskHandlers, type TimerTaskInput } from '../../src/aws/tasks.ts'
import { createWebSocketHandlers } from '../../src/aws/websocket.ts'
import { createKeyRing } from '../../src/core/keyring.ts'
import { generateKeySet, type KeySet } from '../../src/core/keyset.ts'
import { createRandomPool } from '../../src/core/random.ts'
import { createDynamoDbStore, type DynamoDbStore } from '../../src/stores/dynamodb.ts'
import type { ServerConfig } from '../../src/server/config.ts'
import { createRestApi, type RestApi } from './rest-api.ts'
import { startLocalStepFunctions, type LocalFunction, type LocalStepFunctions } from './stepfunctions.ts'
import { readTemplate, stateMachineFromTemplate, TEMPLATE_PATH } from './template.ts'
import { startWebSocketApi, type WebSocketApi } from './websocket-api.ts'

export interface AwsLocalOptions {
  templatePath?: string
  tableName?: string
  /** Log handler outcome lines (default: off). */
  log?: (event: Record<string, unknown>) => void
}

/** What one run cost, in the units AWS bills (docs/aws.md turns these into prices). */
export interface AwsLocalCounters {
  lambda: Record<string, { invocations: number; ms: number }>
  messagesIn: number
  messagesOut: number
  connectionMs: number
  dynamodb: Record<string, number>
  frames: Record<string, number>
}

export interface AwsLocal {
  url: string
  wsUrl: string
  port: number
  currentKeySet: KeySet
  counters: AwsLocalCounters
  sfn: LocalStepFunctions
  rest: RestApi
  ws: WebSocketApi
  store: DynamoDbStore
  dynamo: DynamoDBClient
  tableName: string
  registry: Registry
  /** Authorizer cache TTL in force, seconds (0 with policy rules, as the stack sets it). */
  authorizerTtlSeconds: number
  /** The re-challenge sweeper the local EventBridge schedule runs (src/aws/sweeper.ts). */
  sweeper: Sweeper
  /** What the sweeper's passes did so far. */
  sweeps: SweepResult & { passes: number }
  /** The sweeper function invoked with an operator's request, as `aws lambda invoke` would. */
  invokeSweeper(request: OperatorRechallenge): Promise<{ rechallenged: number }>
  close(): Promise<void>
}

const credentials = { accessKeyId: 'local', secretAccessKey: 'local' }

export async function startAwsLocal(config: ServerConfig, options: AwsLocalOptions = {}): Promise<AwsLocal> {
  const tableName = options.tableName ?? 'wsds-connections'
  const counters: AwsLocalCounters = { lambda: {}, messagesIn: 0, messagesOut: 0, connectionMs: 0, dynamodb: {}, frames: {} }

  // DynamoDB: dynalite in-process, every request counted by operation.
  const dynamoServer = (dynalite as (o: object) => Server)({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
  dynamoServer.prependListener('request', (req: IncomingMessage) => {
    const op = String(req.headers['x-amz-target'] ?? '').split('.')[1] ?? 'unknown'
    counters.dynamodb[op] = (counters.dynamodb[op] ?? 0) + 1
  })
  await new Promise<void>((r) => dynamoServer.listen(0, '127.0.0.1', r))
  const dynamo = new DynamoDBClient({ endpoint: `http://127.0.0.1:${(dynamoServer.address() as AddressInfo).port}`, region: 'local', credentials })
  // The stack's table: records, aliases and the sparse sweep index (src/aws/table.ts).
  await ensureConnectionsTable(dynamo, tableName)
  for (const k of Object.keys(counters.dynamodb)) delete counters.dynamodb[k]

  const random = createRandomPool()
  const keySets = config.keySets.length > 0 ? config.keySets : [generateKeySet(random)]
  // As on npm start (src/server/server.ts): the demo page hands its key set to anyone, so
  // keys loaded from WSDS_KEYS_FILE are never the demo's; it gets an ephemeral set of its own.
  const demoKeySet = config.demo && config.keySets.length > 0 ? generateKeySet(random, { id: 'demo-local' }) : null
  const keyRing = createKeyRing(demoKeySet === null ? keySets : [...keySets, demoKeySet])
  const template = readTemplate(options.templatePath ?? TEMPLATE_PATH)
  // The wait's TimeoutSeconds is a template parameter: whole seconds, at least 1.
  const machine = stateMachineFromTemplate(template, { ChallengeTimeoutSeconds: String(Math.max(1, Math.ceil(config.challengeTimeoutMs / 1000))) })

  // Lambda: each function is its handler, counted and fed JSON copies as the service does.
  const lambdaFn = <E, R>(name: string, fn: (event: E) => Promise<R>) => async (event: E): Promise<R> => {
    const c = (counters.lambda[name] ??= { invocations: 0, ms: 0 })
    c.invocations++
    const started = performance.now()
    try {
      return await fn(JSON.parse(JSON.stringify(event)) as E)
    } finally {
      c.ms += performance.now() - started
    }
  }

  // Late-bound: the @connections and Step Functions endpoints need the handlers, and the handlers need their URLs.
  let sfn!: LocalStepFunctions
  let ws!: WebSocketApi
  const deps = (): AwsDeps => {
    const awsConfig: AwsConfig = {
      tableName,
      allowedOrigins: config.allowedOrigins,
      corsOrigins: config.corsOrigins,
      keySources: [],
      challengeTimeoutMs: config.challengeTimeoutMs,
      maxPayloadBytes: config.maxPayloadBytes,
      stateMachineArn: machine.arn,
      connectionTtlMs: CONNECTION_TTL_MS,
      mode: config.mode,
      challengeForms: config.challengeForms,
      engineChecks: config.engineChecks,
      binding: config.binding,
      policyFile: config.policyFile ?? null,
      rechallengeMs: config.rechallengeMs,
      powBits: config.powBits,
    }
    return {
      config: awsConfig,
      store: createDynamoDbStore({ client: dynamo, tableName }),
      table: createConnectionsTable(dynamo, tableName),
      connections: createConnections(new ApiGatewayManagementApiClient({ endpoint: ws.callbackUrl, region: 'local', credentials })),
      sfn: new SFNClient({ endpoint: sfn.endpoint, region: 'local', credentials }),
      keyRing: async () => keyRing,
      random,
      now: Date.now,
      log: options.log ?? (() => {}),
    }
  }

  let handlers!: ReturnType<typeof createWebSocketHandlers>
  let tasks!: ReturnType<typeof createTaskHandlers>
  const bundles: Record<string, LocalFunction> = {
    timer: lambdaFn('timer', (input: unknown) => tasks.timer(input as TimerTaskInput)),
  }
  const functions = new Map<string, LocalFunction>()
  for (const [arn, bundle] of machine.functions) if (bundles[bundle]) functions.set(arn, bundles[bundle]!)
  sfn = await startLocalStepFunctions({ stateMachineArn: machine.arn, definition: machine.definition, functions })

  const route = (name: string, pick: () => (e: WebSocketEvent) => Promise<unknown>) => lambdaFn(name, (e: WebSocketEvent) => pick()(e) as Promise<{ statusCode: number }>)
  ws = await startWebSocketApi({
    stage: 'live',
    domainName: `127.0.0.1:${config.port}`,
    // The stack's routes: every frame goes to `message` ($default).
    routes: {
      $connect: route('connect', () => handlers.connect),
      $disconnect: route('disconnect', () => handlers.disconnect),
      $default: route('message', () => handlers.message),
    },
    onMessage: () => void counters.messagesIn++,
    onSend: (_id, text) => {
      counters.messagesOut++
      try {
        const m = JSON.parse(text) as { type?: string; reason?: string }
        const key = m.type === 'rejected' ? `rejected:${m.reason}` : String(m.type ?? 'other')
        counters.frames[key] = (counters.frames[key] ?? 0) + 1
      } catch {}
    },
    onDisconnect: (_id, ms) => void (counters.connectionMs += ms),
  })
  const d = deps()
  handlers = createWebSocketHandlers(d)
  tasks = createTaskHandlers(d)

  // With rules, the stack gives the authorizer no identity source and no cache (infra/stack.ts).
  const policyRules = (config.policyFile ?? null) !== null
  const authorizerTtlSeconds = policyRules ? 0 : Math.ceil(config.authCacheTtlMs / 1000)
  const greeting = lambdaFn('greeting', createGreeting(config.corsOrigins))
  const cors = createCorsPolicy(config.corsOrigins)
  const rest = createRestApi({
    preflight: greeting,
    corsHeaders: (origin) => {
      const a = cors.decide({ method: 'GET', origin, requestMethod: undefined, requestHeaders: undefined })
      return a.kind === 'headers' ? a.headers : {}
    },
    authorizer: lambdaFn('authorizer', createAuthorizer(d)),
    cacheTtlSeconds: authorizerTtlSeconds,
    policyRules,
    // WSDS_UPSTREAM replaces the demo greeting Lambda with the named service, as on npm start.
    lambdas: config.upstream === null ? { '/greeting': greeting } : {},
    ...(config.upstream === null ? {} : { upstream: createReverseProxy({ upstream: config.upstream, stripPrefix: '/api' }) }),
    stage: 'live',
  })

  // EventBridge's schedule, compressed: on AWS one invocation a minute sweeps every period
  // within its minute (src/aws/sweeper.ts); here each pass is one timer tick, counted as an
  // invocation of the sweeper function.
  const sweeper = createSweeper(d, { dynamo })
  const sweeps = { due: 0, rechallenged: 0, closed: 0, skipped: 0, passes: 0 }
  const pass = lambdaFn('sweeper', async () => {
    const r = await sweeper.sweep()
    sweeps.passes++
    sweeps.due += r.due
    sweeps.rechallenged += r.rechallenged
    sweeps.closed += r.closed
    sweeps.skipped += r.skipped
    return r
  })
  const periodMs = config.rechallengeMs === null ? 60_000 : sweepPeriodMs(config.rechallengeMs)
  let sweepTimer: NodeJS.Timeout | null = null
  let sweeping: Promise<unknown> = Promise.resolve()
  // Each pass starts one period after the previous one started, as the sweeper's own loop does.
  const scheduleSweep = (delayMs = periodMs) => {
    sweepTimer = setTimeout(() => {
      const started = Date.now()
      sweeping = pass({})
        .catch((err: unknown) => console.error('sweeper failed:', err))
        .finally(() => {
          if (sweepTimer !== null) scheduleSweep(Math.max(0, periodMs - (Date.now() - started)))
        })
    }, delayMs)
    sweepTimer.unref()
  }
  scheduleSweep()
  const invokeSweeper = lambdaFn('sweeper', (request: OperatorRechallenge) => sweeper.rechallenge(request))

  const registry = createRegistry(counters, rest, ws, sfn)
  // The Lambda handlers do not negotiate challenge forms yet: they send `code`, which needs 'unsafe-eval'.
  const demo = config.demo ? await import('../../src/demo/handler.ts').then((m) => m.createDemoHandler({ keySet: demoKeySet ?? keyRing.current, wsPath: '/wsds' })) : null

  const json = (res: ServerResponse, status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!
    const fail = (err: unknown) => {
      console.error(err)
      if (!res.headersSent) json(res, 500, '{"message":"Internal server error"}')
      else res.destroy()
    }
    if (path === '/api' || path.startsWith('/api/')) return void rest.handle(req, res, path.slice(4) || '/').catch(fail)
    if (path === '/wsds/auth') return void rest.handle(req, res, path).catch(fail)
    if (path === '/healthz') return json(res, 200, JSON.stringify({ status: 'ok', deployment: 'aws-local', open: ws.openConnections }))
    if (path === '/metrics') {
      return void registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' })
        res.end(text)
      }, fail)
    }
    if (path === '/wsds') return json(res, 426, '{"error":"upgrade-required"}')
    if (demo !== null && demo(req, res)) return
    json(res, 404, '{"error":"not-found"}')
  })
  server.keepAliveTimeout = 65_000
  server.on('upgrade', (req, socket, head) => {
    if ((req.url ?? '').split('?')[0] !== '/wsds') return void socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n')
    ws.handleUpgrade(req, socket, head)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.port, config.host, resolve)
  })
  const { port } = server.address() as AddressInfo
  const host = config.host.includes(':') ? `[${config.host}]` : config.host
  const url = `http://${host}:${port}`

  return {
    url,
    wsUrl: url.replace('http', 'ws') + '/wsds',
    port,
    currentKeySet: keyRing.current,
    counters,
    sfn,
    rest,
    ws,
    store: d.store as DynamoDbStore,
    dynamo,
    tableName,
    registry,
    authorizerTtlSeconds,
    sweeper,
    sweeps,
    invokeSweeper,
    async close() {
      if (sweepTimer !== null) clearTimeout(sweepTimer)
      sweepTimer = null
      await sweeping
      await ws.close()
      await sfn.close()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
      dynamo.destroy()
      await new Promise<void>((r) => dynamoServer.close(() => r()))
    },
  }
}

function createRegistry(counters: AwsLocalCounters, rest: RestApi, ws: WebSocketApi, sfn: LocalStepFunctions): Registry {
  const registry = new Registry()
  registry.setDefaultLabels({ deployment: 'aws-local' })
  const counter = (name: string, help: string, labelNames: string[], fill: (c: Counter<string>) => void) =>
    new Counter({ name, help, labelNames, registers: [registry], collect() { this.reset(); fill(this) } })
  counter('wsds_handshakes_total', 'hello messages that started a handshake (connection frames sent)', [], (c) => c.inc(counters.frames.connection ?? 0))
  counter('wsds_challenges_issued_total', 'challenge frames sent', [], (c) => c.inc(counters.frames.challenge ?? 0))
  counter('wsds_outcomes_total', 'Handshake outcomes: verified, or the rejection reason', ['outcome'], (c) => {
    for (const [k, n] of Object.entries(counters.frames)) {
      if (k === 'verified') c.inc({ outcome: 'verified' }, n)
      else if (k.startsWith('rejected:')) c.inc({ outcome: k.slice(9) }, n)
    }
  })
  counter('wsds_auth_decisions_total', 'REST authorizer decisions (allow, deny:<why>), including cached ones', ['result'], (c) => {
    for (const [result, n] of Object.entries(rest.stats.decisions)) c.inc({ result }, n)
  })
  counter('wsds_authorizer_invocations_total', 'Authorizer Lambda invocations (cache misses)', [], (c) => c.inc(rest.stats.authorizerInvocations))
  counter('wsds_authorizer_cache_hits_total', 'Requests decided from the authorizer result cache', [], (c) => c.inc(rest.stats.cacheHits))
  counter('wsds_lambda_invocations_total', 'Lambda invocations by function', ['function'], (c) => {
    for (const [fn, v] of Object.entries(counters.lambda)) c.inc({ function: fn }, v.invocations)
  })
  counter('wsds_websocket_messages_total', 'WebSocket messages by direction (API Gateway bills both)', ['direction'], (c) => {
    c.inc({ direction: 'in' }, counters.messagesIn)
    c.inc({ direction: 'out' }, counters.messagesOut)
  })
  counter('wsds_dynamodb_requests_total', 'DynamoDB requests by operation', ['operation'], (c) => {
    for (const [operation, n] of Object.entries(counters.dynamodb)) c.inc({ operation }, n)
  })
  counter('wsds_state_transitions_total', 'Step Functions state transitions', [], (c) => c.inc(sfn.transitions))
  new Gauge({ name: 'wsds_open_connections', help: 'Open WebSocket connections', registers: [registry], collect() { this.set(ws.openConnections) } })
  return registry
}
