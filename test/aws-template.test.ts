/**
 * The CDK stack and the committed CloudFormation template: a fresh synth must equal
 * deploy/aws/template.json (run `npm run synth` when this fails), CDK assertions on what the
 * stack promises (resources, routes, TTL attribute, authorizer identity source and gateway
 * responses, least-privilege IAM), and offline validation: cfn-lint (CloudFormation) and
 * asl-validator (the state machine definition).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import * as nodeUtil from 'node:util'
import { before, describe, it } from 'node:test'
import { Template } from 'aws-cdk-lib/assertions'
import { MAX_INLINE_TEMPLATE_BYTES, synthTemplate, templateText, TEMPLATE_PATH } from '../infra/synth.ts'
import { CODE_KEY_PATTERN, FUNCTIONS, authorizerTtlFromEnv, fnId } from '../infra/stack.ts'
import { stateMachineFromTemplate, type CfnTemplate } from '../local/aws/template.ts'

const require = createRequire(import.meta.url)
const NO_VALUE = Symbol('AWS::NoValue')

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>

describe('AWS stack (CDK) and the committed template', () => {
  let fresh: Record<string, unknown>
  let template: Template
  let resources: Resources
  before(() => {
    // CDK's built-in CloudFormation validation costs seconds per synth; npm run synth keeps it.
    fresh = synthTemplate({ validate: false })
    template = Template.fromJSON(fresh)
    resources = fresh.Resources as Resources
  })
  const logicalId = (name: string) => Object.keys(resources).find((id) => resources[id]!.Type === 'AWS::Lambda::Function' && id.startsWith(fnId(name)))!

  it('deploy/aws/template.json is what npm run synth writes now (not stale)', () => {
    const committed = readFileSync(TEMPLATE_PATH, 'utf8')
    assert.equal(committed, templateText(fresh), 'deploy/aws/template.json is stale: run `npm run synth` and commit it')
  })

  it('is small enough for `aws cloudformation deploy --template-file` without --s3-bucket (51,200 bytes)', () => {
    const bytes = Buffer.byteLength(readFileSync(TEMPLATE_PATH))
    assert.ok(bytes < MAX_INLINE_TEMPLATE_BYTES, `${bytes} bytes`)
  })

  it('has the resources: 7 nodejs22.x functions, one table, one Standard state machine, both APIs', () => {
    template.resourceCountIs('AWS::Lambda::Function', FUNCTIONS.length)
    template.allResourcesProperties('AWS::Lambda::Function', { Runtime: 'nodejs22.x', Architectures: ['arm64'] })
    for (const name of FUNCTIONS) assert.ok(logicalId(name), name)
    template.resourceCountIs('AWS::DynamoDB::Table', 1)
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 1)
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineType: 'STANDARD' })
    template.resourceCountIs('AWS::ApiGatewayV2::Api', 1)
    template.resourceCountIs('AWS::ApiGateway::RestApi', 1)
    // No CDK bootstrap needed: no BootstrapVersion parameter, no asset buckets.
    assert.deepEqual(Object.keys((fresh.Parameters as object) ?? {}).sort(), [
      'AlarmThreshold', 'AlarmTopicArn', 'AllowedOrigins', 'ChallengeTimeoutSeconds', 'CorsOrigins', 'KeySetName', 'KeySetStore',
      'LambdaCodeBucket', 'LambdaCodeKey', 'LogRetentionDays', 'PowBits', 'PreviousKeySetName', 'RateLimitBurst', 'RateLimitPerSecond',
      'RechallengeMs',
    ])
  })

  it('keys the table on connectionId, on demand, with DynamoDB TTL on the `ttl` attribute', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'connectionId', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
    })
  })

  it('routes every frame to the message function ($default), plus $connect and $disconnect', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'WEBSOCKET', RouteSelectionExpression: '$request.body.action' })
    const routes = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGatewayV2::Route').map((r) => r.Properties.RouteKey)
    assert.deepEqual(routes.sort(), ['$connect', '$default', '$disconnect'])
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', { StageName: 'live', AutoDeploy: true })
  })

  it('puts the REQUEST authorizer on the connectionId header with the TTL parameter, and 401 {"error":"unauthorized"} gateway responses', () => {
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', {
      Type: 'REQUEST',
      IdentitySource: 'method.request.header.connectionId',
      AuthorizerResultTtlInSeconds: 5,
    })
    for (const type of ['UNAUTHORIZED', 'ACCESS_DENIED']) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: type, StatusCode: '401', ResponseTemplates: { 'application/json': '{"error":"unauthorized"}' } })
    }
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'AUTHORIZER_FAILURE', StatusCode: '503' })
    const methods = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGateway::Method')
    assert.equal(methods.length, 3)
    for (const m of methods) assert.equal(m.Properties.AuthorizationType, m.Properties.HttpMethod === 'OPTIONS' ? 'NONE' : 'CUSTOM')
  })

  it('answers CORS preflights without the authorizer, and lets cross-origin pages read refusals', () => {
    const methods = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGateway::Method')
    const options = methods.filter((m) => m.Properties.HttpMethod === 'OPTIONS')
    assert.equal(options.length, 1)
    assert.equal(options[0]!.Properties.AuthorizationType, 'NONE')
    assert.match(JSON.stringify(options[0]!.Properties.Integration), /GreetingFunction/)
    for (const type of ['UNAUTHORIZED', 'ACCESS_DENIED', 'AUTHORIZER_FAILURE']) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: type, ResponseParameters: { 'gatewayresponse.header.Access-Control-Allow-Origin': 'method.request.header.Origin' } })
    }
    const greeting = resources[logicalId('greeting')]!
    assert.match(JSON.stringify(greeting.Properties.Environment), /WSDS_CORS_ORIGINS/)
  })

  it('derives the stage Deployment\'s logical id from the authorizer TTL, so a TTL change redeploys', () => {
    const deploymentOf = (t: Record<string, unknown>) => Object.keys(t.Resources as object).find((id) => (t.Resources as Resources)[id]!.Type === 'AWS::ApiGateway::Deployment')!
    const other = synthTemplate({ validate: false, authorizerTtlSeconds: 60 })
    assert.notEqual(deploymentOf(other), deploymentOf(fresh))
    assert.equal(deploymentOf(synthTemplate({ validate: false })), deploymentOf(fresh), 'stable for the same TTL')
    Template.fromJSON(other).hasResourceProperties('AWS::ApiGateway::Authorizer', { AuthorizerResultTtlInSeconds: 60 })
    assert.equal(authorizerTtlFromEnv({ WSDS_AUTH_CACHE_TTL_MS: '1500' }), 2)
    assert.equal(authorizerTtlFromEnv({}), 5)
    assert.throws(() => authorizerTtlFromEnv({ WSDS_AUTH_CACHE_TTL_MS: '5s' }))
  })

  it('names the code by its content: LambdaCodeKey must be a lambda-<hash>.zip key, so new code is a new key', () => {
    const key = (fresh.Parameters as Record<string, { AllowedPattern?: string; Default?: unknown }>).LambdaCodeKey!
    assert.equal(key.Default, undefined)
    assert.equal(key.AllowedPattern, CODE_KEY_PATTERN)
    const re = new RegExp(CODE_KEY_PATTERN)
    assert.ok(re.test('wsds/lambda-0123456789abcdef.zip'))
    assert.ok(!re.test('wsds/lambda.zip'))
    template.allResourcesProperties('AWS::Lambda::Function', { Code: { S3Key: { Ref: 'LambdaCodeKey' } } })
  })

  it('gives every function a log group with the LogRetentionDays parameter (default 14)', () => {
    const groups = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Logs::LogGroup')
    assert.equal(groups.length, FUNCTIONS.length)
    for (const [, g] of groups) assert.deepEqual(g.Properties.RetentionInDays, { Ref: 'LogRetentionDays' })
    for (const name of FUNCTIONS) assert.match(JSON.stringify(resources[logicalId(name)]!.Properties.LoggingConfig), /FunctionLogs/, name)
    assert.equal((fresh.Parameters as Record<string, { Default?: unknown }>).LogRetentionDays?.Default, 14)
  })

  it('throttles both stages from the rate-limit parameters (default 200/s, bursts of 400)', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      MethodSettings: [{ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: { Ref: 'RateLimitPerSecond' }, ThrottlingBurstLimit: { Ref: 'RateLimitBurst' } }],
    })
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', { DefaultRouteSettings: { ThrottlingRateLimit: { Ref: 'RateLimitPerSecond' }, ThrottlingBurstLimit: { Ref: 'RateLimitBurst' } } })
    const params = fresh.Parameters as Record<string, { Default?: unknown }>
    assert.equal(params.RateLimitPerSecond?.Default, 200)
    assert.equal(params.RateLimitBurst?.Default, 400)
  })

  it('alarms on REST 5xx, authorizer errors and failed executions, notifying AlarmTopicArn when set', () => {
    const alarms = Object.values(resources).filter((r) => r.Type === 'AWS::CloudWatch::Alarm')
    assert.deepEqual(alarms.map((a) => a.Properties.MetricName).sort(), ['5XXError', 'Errors', 'ExecutionsFailed'])
    for (const a of alarms) {
      assert.deepEqual(a.Properties.Threshold, { Ref: 'AlarmThreshold' })
      assert.deepEqual(a.Properties.AlarmActions, { 'Fn::If': ['HasAlarmTopic', [{ Ref: 'AlarmTopicArn' }], { Ref: 'AWS::NoValue' }] })
    }
  })

  it('keeps the key set out of the template: the functions get WSDS_KEYS_FILE built from KeySetStore and the names', () => {
    const withKeys = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function' && JSON.stringify(r.Properties).includes('WSDS_KEYS_FILE'))
    assert.deepEqual(withKeys.map(([id]) => id).sort(), [logicalId('message'), logicalId('timer'), logicalId('sweeper')].sort())
    for (const [, r] of withKeys) {
      const text = JSON.stringify((r.Properties.Environment as { Variables: Record<string, unknown> }).Variables.WSDS_KEYS_FILE)
      assert.match(text, /"ssm:\/"/)
      assert.match(text, /"secretsmanager:"/)
      assert.match(text, /"Ref":"KeySetName"/)
      assert.match(text, /"Ref":"PreviousKeySetName"/)
    }
    assert.ok(!/"keys"\s*:\s*\[/.test(JSON.stringify(fresh)))
  })

  it('scopes key reads to exactly the named parameter or secret, in the ARN formats AWS uses', () => {
    const resolved = (store: 'ssm' | 'secretsmanager', previous: string) => {
      const params = { KeySetStore: store, KeySetName: 'wsds/keyset', PreviousKeySetName: previous }
      const conditions: Record<string, boolean> = { KeySetsInSsm: store === 'ssm', HasPreviousKeySet: previous !== '' }
      const walk = (v: unknown): unknown => {
        if (Array.isArray(v)) return v.map(walk).filter((x) => x !== NO_VALUE)
        if (v === null || typeof v !== 'object') return v
        const o = v as Record<string, unknown>
        if ('Fn::If' in o) {
          const [c, a, b] = o['Fn::If'] as [string, unknown, unknown]
          return walk(conditions[c] ? a : b)
        }
        if ('Ref' in o) {
          const name = o.Ref as string
          if (name === 'AWS::NoValue') return NO_VALUE
          if (name in params) return params[name as keyof typeof params]
          return { 'AWS::Partition': 'aws', 'AWS::Region': 'eu-west-1', 'AWS::AccountId': '123456789012' }[name] ?? `<${name}>`
        }
        if ('Fn::Join' in o) {
          const [sep, parts] = o['Fn::Join'] as [string, unknown[]]
          return (walk(parts) as string[]).join(sep)
        }
        return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, walk(x)]))
      }
      const policy = Object.values(resources).find((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties).includes('KeySetName') && JSON.stringify(r.Properties.Roles).includes('MessageFunction'))!
      const statements = (walk(policy.Properties.PolicyDocument) as { Statement: { Action: string | string[]; Resource: unknown }[] }).Statement
      const keys = statements.find((st) => /GetParameter|GetSecretValue/.test(JSON.stringify(st.Action)))!
      const env = walk((resources[logicalId('message')]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables.WSDS_KEYS_FILE)
      return { action: keys.Action, resources: [keys.Resource].flat(), env }
    }
    assert.deepEqual(resolved('ssm', ''), { action: 'ssm:GetParameter', resources: ['arn:aws:ssm:eu-west-1:123456789012:parameter/wsds/keyset'], env: 'ssm:/wsds/keyset' })
    assert.deepEqual(resolved('secretsmanager', 'wsds/old'), {
      action: 'secretsmanager:GetSecretValue',
      resources: ['arn:aws:secretsmanager:eu-west-1:123456789012:secret:wsds/keyset-??????', 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:wsds/old-??????'],
      env: 'secretsmanager:wsds/keyset,secretsmanager:wsds/old',
    })
    // IAM's ? matches exactly one character: the 6 that Secrets Manager appends, not another secret's name.
    const glob = (pattern: string) => new RegExp('^' + pattern.replace(/[.*+^${}()|[\]\\/]/g, '\\$&').replace(/\?/g, '.') + '$')
    const arn = resolved('secretsmanager', '').resources[0] as string
    assert.ok(glob(arn).test('arn:aws:secretsmanager:eu-west-1:123456789012:secret:wsds/keyset-AbC123'))
    assert.ok(!glob(arn).test('arn:aws:secretsmanager:eu-west-1:123456789012:secret:wsds/keyset-other-AbC123'))
  })

  it('grants each function exactly the actions it calls (least privilege), ManageConnections scoped to the API stage', () => {
    const keyRead = '{"Fn::If":["KeySetsInSsm","ssm:GetParameter","secretsmanager:GetSecretValue"]}'
    const expected: Record<string, string[]> = {
      connect: ['dynamodb:PutItem'],
      disconnect: ['dynamodb:DeleteItem', 'states:SendTaskSuccess'],
      message: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'execute-api:ManageConnections', 'states:SendTaskSuccess', 'states:StartExecution', keyRead],
      timer: ['dynamodb:GetItem', 'dynamodb:UpdateItem', 'execute-api:ManageConnections', 'states:SendTaskSuccess', 'states:StartExecution', keyRead],
      authorizer: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'execute-api:ManageConnections'],
      greeting: [],
      sweeper: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:Query', 'dynamodb:Scan', 'dynamodb:UpdateItem', 'execute-api:ManageConnections', keyRead],
    }
    const policies = Object.values(resources).filter((r) => r.Type === 'AWS::IAM::Policy')
    for (const name of FUNCTIONS) {
      const fn = resources[logicalId(name)]!
      const role = (fn.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0]
      const statements = policies
        .filter((p) => JSON.stringify(p.Properties.Roles).includes(`"${role}"`))
        .flatMap((p) => (p.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }).Statement)
      const actions = [...new Set(statements.flatMap((s) => [s.Action].flat().map((a) => (typeof a === 'string' ? a : JSON.stringify(a)))))].sort()
      assert.deepEqual(actions, expected[name], name)
      for (const s of statements) {
        assert.notEqual(s.Resource, '*', `${name}: ${String(s.Action)} on *`)
        const text = JSON.stringify(s.Resource)
        const acts = [s.Action].flat().filter((a): a is string => typeof a === 'string')
        if (acts.some((a) => a.startsWith('dynamodb:'))) assert.match(text, /Connections.*Arn/, name)
        if (acts.some((a) => a.startsWith('states:'))) assert.match(text, /":stateMachine:",\{"Fn::Join":\["-",\[\{"Ref":"AWS::StackName"\},"deadline"\]\]\}/, name)
        if (acts.includes('execute-api:ManageConnections')) {
          assert.match(text, /"Ref":"WebSocketApi/, name)
          assert.match(text, /\/live\/\*\/@connections\/\*/, name)
        }
      }
    }
    // The state machine may invoke its task function and nothing else.
    const machineRole = Object.keys(resources).find((id) => id.startsWith('HandshakeRole') && resources[id]!.Type === 'AWS::IAM::Role')!
    const machinePolicy = policies.find((p) => JSON.stringify(p.Properties.Roles).includes(`"${machineRole}"`))!
    const ms = (machinePolicy.Properties.PolicyDocument as { Statement: { Action: string; Resource: unknown }[] }).Statement
    assert.deepEqual([...new Set(ms.map((s) => s.Action))], ['lambda:InvokeFunction'])
    const invoked = JSON.stringify(ms.map((s) => s.Resource))
    assert.ok(invoked.includes(logicalId('timer')))
    for (const name of FUNCTIONS.filter((f) => f !== 'timer')) assert.ok(!invoked.includes(logicalId(name)), name)
  })

  it('defines the deadline: one waitForTaskToken task with TimeoutSeconds from the parameter, a timeout catch, at most one retry', () => {
    const sm = stateMachineFromTemplate(fresh as unknown as CfnTemplate, { ChallengeTimeoutSeconds: '10' })
    const states = sm.definition.States as Record<string, Record<string, unknown>>
    assert.equal(sm.definition.StartAt, 'Wait')
    assert.equal(states.Wait?.TimeoutSeconds, 10)
    assert.deepEqual((states.Wait?.Catch as { ErrorEquals: string[]; Next: string }[]).map((c) => [c.ErrorEquals, c.Next]), [
      [['States.Timeout'], 'Deadline'],
      [['Disarmed'], 'Disarmed'],
    ])
    assert.equal(states.Wait?.End, true)
    for (const name of ['Wait', 'Deadline']) {
      const retry = states[name]!.Retry as { MaxAttempts: number }[]
      assert.ok(retry.length > 0 && retry.every((r) => r.MaxAttempts === 1), name)
    }
    for (const name of Object.keys(states)) assert.equal(typeof states[name]!.Comment, 'string', `${name} says why it exists`)
    assert.match(JSON.stringify(template.findResources('AWS::StepFunctions::StateMachine')), /"Ref":"ChallengeTimeoutSeconds"/)
  })

  it('validates the state machine definition with asl-validator', () => {
    const validate = require('asl-validator') as (d: unknown, o?: { checkArn: boolean; checkPaths: boolean }) => { isValid: boolean; errors: unknown[] }
    const { definition } = stateMachineFromTemplate(fresh as unknown as CfnTemplate, { ChallengeTimeoutSeconds: '10' })
    const out = validate(definition, { checkArn: true, checkPaths: true })
    assert.deepEqual(out.errors, [])
    assert.equal(out.isValid, true)
  })

  it('validates the template with cfn-lint, whose only findings are properties newer than its resource spec', () => {
    // cfn-lint 1.9.7 still calls util.isUndefined, which Node 23 removed: given back, for this
    // linter only, so the template is linted on every Node line CI runs.
    const legacyUtil = require('node:util') as typeof nodeUtil & { isUndefined?: (v: unknown) => boolean }
    legacyUtil.isUndefined ??= (v: unknown) => v === undefined
    const api = require('cfn-lint/lib/api.js') as { validateJsonObject(t: unknown, o: object): { errors: { crit: { message: string; resource: string }[]; warn: unknown[] } } }
    const out = api.validateJsonObject(JSON.parse(JSON.stringify(fresh)), { parameters: { AllowedOrigins: 'https://app.example.com', LambdaCodeBucket: 'code-bucket' } })
    // cfn-lint 1.9.7 (npm) ships a 2019 resource specification. These properties came later
    // (Lambda Architectures 2021, Step Functions StateMachineType 2019-11, API Gateway v2
    // AutoDeploy, which makes DeploymentId optional) and are checked by the CDK assertions above.
    const newerThanSpec = [
      /^Architectures is not a valid property of AWS::Lambda::Function$/,
      /^StateMachineType is not a valid property of AWS::StepFunctions::StateMachine$/,
      /^AutoDeploy is not a valid property of AWS::ApiGatewayV2::Stage$/,
      /^Required property DeploymentId missing for type AWS::ApiGatewayV2::Stage$/,
      // Lambda LoggingConfig (2023): how a function names its own log group.
      /^LoggingConfig is not a valid property of AWS::Lambda::Function$/,
      // cfn-lint 1.9.7 compares a Number parameter's default (14) with its AllowedValues as
      // strings of another type; CloudFormation itself accepts it (the CDK synth validates it).
      /^Parameter value '14' for LogRetentionDays is not within the parameters AllowedValues$/,
    ]
    const unexpected = out.errors.crit.filter((e) => !newerThanSpec.some((re) => re.test(e.message)))
    assert.deepEqual(unexpected.map((e) => `${e.resource}: ${e.message}`), [])
    assert.deepEqual(out.errors.warn, [])
  })
})
