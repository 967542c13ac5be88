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
import { before, describe, it } from 'node:test'
import { Template } from 'aws-cdk-lib/assertions'
import { synthTemplate, templateText, TEMPLATE_PATH } from '../infra/synth.ts'
import { FUNCTIONS, fnId } from '../infra/stack.ts'
import { stateMachineFromTemplate, type CfnTemplate } from '../local/aws/template.ts'

const require = createRequire(import.meta.url)

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

  it('has the resources: 9 nodejs22.x functions, one table, one Standard state machine, both APIs', () => {
    template.resourceCountIs('AWS::Lambda::Function', FUNCTIONS.length)
    template.allResourcesProperties('AWS::Lambda::Function', { Runtime: 'nodejs22.x', Architectures: ['arm64'] })
    for (const name of FUNCTIONS) assert.ok(logicalId(name), name)
    template.resourceCountIs('AWS::DynamoDB::Table', 1)
    template.resourceCountIs('AWS::StepFunctions::StateMachine', 1)
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', { StateMachineType: 'STANDARD' })
    template.resourceCountIs('AWS::ApiGatewayV2::Api', 1)
    template.resourceCountIs('AWS::ApiGateway::RestApi', 1)
    // No CDK bootstrap needed: no BootstrapVersion parameter, no asset buckets.
    assert.deepEqual(Object.keys((fresh.Parameters as object) ?? {}).sort(), ['AllowedOrigins', 'AuthorizerCacheTtlSeconds', 'ChallengeTimeoutSeconds', 'KeySets', 'LambdaCodeBucket', 'LambdaCodeKey'])
  })

  it('keys the table on connectionId, on demand, with DynamoDB TTL on the `ttl` attribute', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'connectionId', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: 'ttl', Enabled: true },
    })
  })

  it('routes on $request.body.action: $connect, $disconnect, $default, hello, answer, ping', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Api', { ProtocolType: 'WEBSOCKET', RouteSelectionExpression: '$request.body.action' })
    const routes = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGatewayV2::Route').map((r) => r.Properties.RouteKey)
    assert.deepEqual(routes.sort(), ['$connect', '$default', '$disconnect', 'answer', 'hello', 'ping'])
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', { StageName: 'live', AutoDeploy: true })
  })

  it('puts the REQUEST authorizer on the connectionId header with the TTL parameter, and 401 {"error":"unauthorized"} gateway responses', () => {
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', {
      Type: 'REQUEST',
      IdentitySource: 'method.request.header.connectionId',
      AuthorizerResultTtlInSeconds: { Ref: 'AuthorizerCacheTtlSeconds' },
    })
    for (const type of ['UNAUTHORIZED', 'ACCESS_DENIED']) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: type, StatusCode: '401', ResponseTemplates: { 'application/json': '{"error":"unauthorized"}' } })
    }
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'AUTHORIZER_FAILURE', StatusCode: '503' })
    const methods = Object.values(resources).filter((r) => r.Type === 'AWS::ApiGateway::Method')
    assert.equal(methods.length, 2)
    for (const m of methods) assert.equal(m.Properties.AuthorizationType, 'CUSTOM')
    const params = template.findParameters('AuthorizerCacheTtlSeconds')
    assert.equal(params.AuthorizerCacheTtlSeconds?.Default, 5)
  })

  it('keeps the key set out of the template: functions get WSDS_KEYS_FILE from the KeySets parameter (ssm:/secretsmanager:)', () => {
    const withKeys = Object.entries(resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function' && JSON.stringify(r.Properties).includes('WSDS_KEYS_FILE'))
    assert.deepEqual(withKeys.map(([id]) => id).sort(), [logicalId('hello'), logicalId('issue-challenge')].sort())
    for (const [, r] of withKeys) assert.deepEqual((r.Properties.Environment as { Variables: Record<string, unknown> }).Variables.WSDS_KEYS_FILE, { Ref: 'KeySets' })
    assert.ok(!/"keys"\s*:\s*\[/.test(JSON.stringify(fresh)))
  })

  it('grants each function exactly the actions it calls (least privilege), ManageConnections scoped to the API stage', () => {
    const expected: Record<string, string[]> = {
      connect: ['dynamodb:PutItem'],
      disconnect: ['dynamodb:DeleteItem', 'states:SendTaskFailure'],
      hello: ['dynamodb:UpdateItem', 'execute-api:ManageConnections', 'secretsmanager:GetSecretValue', 'ssm:GetParameter', 'states:StartExecution'],
      answer: ['dynamodb:UpdateItem', 'execute-api:ManageConnections', 'states:SendTaskFailure', 'states:SendTaskSuccess'],
      message: ['execute-api:ManageConnections'],
      'issue-challenge': ['dynamodb:UpdateItem', 'execute-api:ManageConnections', 'secretsmanager:GetSecretValue', 'ssm:GetParameter'],
      finish: ['dynamodb:UpdateItem', 'execute-api:ManageConnections'],
      authorizer: ['dynamodb:GetItem'],
      greeting: [],
    }
    const policies = Object.values(resources).filter((r) => r.Type === 'AWS::IAM::Policy')
    for (const name of FUNCTIONS) {
      const fn = resources[logicalId(name)]!
      const role = (fn.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0]
      const statements = policies
        .filter((p) => JSON.stringify(p.Properties.Roles).includes(`"${role}"`))
        .flatMap((p) => (p.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }).Statement)
      const actions = [...new Set(statements.flatMap((s) => [s.Action].flat()))].sort()
      assert.deepEqual(actions, expected[name], name)
      for (const s of statements) {
        assert.notEqual(s.Resource, '*', `${name}: ${String(s.Action)} on *`)
        const text = JSON.stringify(s.Resource)
        if ([s.Action].flat().some((a) => a.startsWith('dynamodb:'))) assert.match(text, /Connections.*Arn/, name)
        if ([s.Action].flat().some((a) => a.startsWith('states:'))) assert.match(text, /"Ref":"Handshake/, name)
        if ([s.Action].flat().includes('execute-api:ManageConnections')) {
          assert.match(text, /"Ref":"WebSocketApi/, name)
          assert.match(text, /\/live\/\*\/@connections\/\*/, name)
        }
        if ([s.Action].flat().includes('ssm:GetParameter')) assert.match(text, /parameter\/wsds\/\*/, name)
      }
    }
    // The state machine may invoke its two task functions and nothing else.
    const machineRole = Object.keys(resources).find((id) => id.startsWith('HandshakeRole') && resources[id]!.Type === 'AWS::IAM::Role')!
    const machinePolicy = policies.find((p) => JSON.stringify(p.Properties.Roles).includes(`"${machineRole}"`))!
    const ms = (machinePolicy.Properties.PolicyDocument as { Statement: { Action: string; Resource: unknown }[] }).Statement
    assert.deepEqual([...new Set(ms.map((s) => s.Action))], ['lambda:InvokeFunction'])
    const invoked = JSON.stringify(ms.map((s) => s.Resource))
    assert.ok(invoked.includes(logicalId('issue-challenge')) && invoked.includes(logicalId('finish')))
    for (const name of FUNCTIONS.filter((f) => f !== 'issue-challenge' && f !== 'finish')) assert.ok(!invoked.includes(logicalId(name)), name)
  })

  it('defines the handshake: a waitForTaskToken task with the deadline as TimeoutSeconds, a Choice, three outcome tasks', () => {
    const sm = stateMachineFromTemplate(fresh as unknown as CfnTemplate, { ChallengeTimeoutSeconds: '10' })
    const states = sm.definition.States as Record<string, Record<string, unknown>>
    assert.equal(sm.definition.StartAt, 'IssueChallenge')
    assert.equal(states.IssueChallenge?.TimeoutSeconds, 10)
    assert.deepEqual((states.IssueChallenge?.Catch as { ErrorEquals: string[]; Next: string }[]).map((c) => [c.ErrorEquals, c.Next]), [
      [['States.Timeout'], 'TimedOut'],
      [['States.ALL'], 'Rejected'],
    ])
    assert.equal(states.AnswerAccepted?.Type, 'Choice')
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
    ]
    const unexpected = out.errors.crit.filter((e) => !newerThanSpec.some((re) => re.test(e.message)))
    assert.deepEqual(unexpected.map((e) => `${e.resource}: ${e.message}`), [])
    assert.deepEqual(out.errors.warn, [])
  })
})
