/**
 * What the CDK stack (infra/stack.ts) builds for step-up and policy rules on AWS: the sweeper
 * function, its EventBridge schedule and the sparse sweep index; and, when synthesized with
 * WSDS_POLICY_FILE, an authorizer that runs for every request (no identity source, no cache)
 * with `deny` answered 403 {"error":"forbidden"}. Also npm run bundle:aws with a rules file.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { before, describe, it } from 'node:test'
import { Template } from 'aws-cdk-lib/assertions'
import { bundleLambdas, POLICY_BUNDLE_NAME } from '../infra/bundle.ts'
import { BUNDLED_POLICY_PATH, fnId, policyFileFromEnv } from '../infra/stack.ts'
import { synthTemplate } from '../infra/synth.ts'
import { SWEEP_INDEX } from '../src/aws/table.ts'
import { POLICY_YAML } from './contracts/policy-cases.ts'

type Resources = Record<string, { Type: string; Properties: Record<string, unknown> }>
const fnLogicalId = (resources: Resources, name: string) =>
  Object.keys(resources).find((id) => resources[id]!.Type === 'AWS::Lambda::Function' && id.startsWith(fnId(name)))!

describe('AWS stack: the re-challenge sweeper', () => {
  let template: Template
  let resources: Resources
  before(() => {
    const fresh = synthTemplate({ validate: false })
    template = Template.fromJSON(fresh)
    resources = fresh.Resources as Resources
  })

  it('gives the table a sparse, keys-only index on sweepShard and sweepAt', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      GlobalSecondaryIndexes: [
        {
          IndexName: SWEEP_INDEX,
          KeySchema: [
            { AttributeName: 'sweepShard', KeyType: 'HASH' },
            { AttributeName: 'sweepAt', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'KEYS_ONLY' },
        },
      ],
    })
  })

  it('runs the sweeper every minute from EventBridge, with a timeout above its 55 s of sweeping', () => {
    const sweeper = fnLogicalId(resources, 'sweeper')
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      State: 'ENABLED',
      Targets: [{ Arn: { 'Fn::GetAtt': [sweeper, 'Arn'] }, Input: '{"op":"sweep"}' }],
    })
    assert.equal(resources[sweeper]!.Properties.Timeout, 70)
  })

  it('hands WSDS_RECHALLENGE_MS and WSDS_POW_BITS from parameters to every function that issues challenges', () => {
    for (const name of ['message', 'timer', 'sweeper']) {
      const vars = (resources[fnLogicalId(resources, name)]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables
      assert.deepEqual(vars.WSDS_RECHALLENGE_MS, { Ref: 'RechallengeMs' }, name)
      assert.deepEqual(vars.WSDS_POW_BITS, { Ref: 'PowBits' }, name)
    }
    const params = synthTemplate({ validate: false }).Parameters as Record<string, { Default?: unknown; AllowedPattern?: string }>
    assert.equal(params.RechallengeMs?.Default, 'off')
    assert.ok(new RegExp(params.RechallengeMs!.AllowedPattern!).test('300000'))
    assert.ok(!new RegExp(params.RechallengeMs!.AllowedPattern!).test('5m'))
    assert.equal(params.PowBits?.Default, 0)
  })

  it('lets the sweeper Query only the sweep index', () => {
    const role = (resources[fnLogicalId(resources, 'sweeper')]!.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0]
    const statements = Object.values(resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(`"${role}"`))
      .flatMap((p) => (p.Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }).Statement)
    const query = statements.find((s) => s.Action === 'dynamodb:Query')!
    assert.match(JSON.stringify(query.Resource), new RegExp(`/index/${SWEEP_INDEX}"`))
  })

  it('keeps the connectionId identity source and the 401 mapping of ACCESS_DENIED without rules', () => {
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', { IdentitySource: 'method.request.header.connectionId', AuthorizerResultTtlInSeconds: 5 })
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'ACCESS_DENIED', StatusCode: '401' })
  })
})

describe('AWS stack synthesized with WSDS_POLICY_FILE', () => {
  let template: Template
  let resources: Resources
  let plain: Resources
  before(() => {
    const fresh = synthTemplate({ validate: false, policyFile: 'ssm:/wsds/policy' })
    template = Template.fromJSON(fresh)
    resources = fresh.Resources as Resources
    plain = synthTemplate({ validate: false }).Resources as Resources
  })

  it('calls the authorizer for every request: no identity source, no cache', () => {
    const authorizer = Object.values(resources).find((r) => r.Type === 'AWS::ApiGateway::Authorizer')!
    assert.equal(authorizer.Properties.IdentitySource, undefined)
    assert.equal(authorizer.Properties.AuthorizerResultTtlInSeconds, 0)
    // A TTL asked for alongside rules is not used: a cached Allow would skip them.
    Template.fromJSON(synthTemplate({ validate: false, policyFile: 'ssm:/wsds/policy', authorizerTtlSeconds: 300 })).hasResourceProperties('AWS::ApiGateway::Authorizer', { AuthorizerResultTtlInSeconds: 0 })
  })

  it('answers a deny rule 403 {"error":"forbidden"} and still refuses ids 401', () => {
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'ACCESS_DENIED', StatusCode: '403', ResponseTemplates: { 'application/json': '{"error":"forbidden"}' } })
    template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', { ResponseType: 'UNAUTHORIZED', StatusCode: '401' })
  })

  it('gives the authorizer the rules source and read access to exactly that parameter, and forward auth the rule header', () => {
    const id = fnLogicalId(resources, 'authorizer')
    const vars = (resources[id]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables
    assert.equal(vars.WSDS_POLICY_FILE, 'ssm:/wsds/policy')
    const text = JSON.stringify(Object.values(resources).filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes('AuthorizerFunction')))
    assert.match(text, /"ssm:GetParameter"/)
    assert.match(text, /:parameter\/wsds\/policy"/)
    assert.match(JSON.stringify(Object.values(resources).filter((r) => r.Type === 'AWS::ApiGateway::Method')), /method\.response\.header\.x-wsds-rule":"context\.authorizer\.rule"/)
  })

  it('redeploys the stage: the Deployment\'s logical id changes with the rules', () => {
    const deployment = (r: Resources) => Object.keys(r).find((id) => r[id]!.Type === 'AWS::ApiGateway::Deployment')
    assert.notEqual(deployment(resources), deployment(plain))
  })

  it('reads WSDS_POLICY_FILE at synth time: ssm: names pass on, paths become the bundled file', () => {
    assert.equal(policyFileFromEnv({}), undefined)
    assert.equal(policyFileFromEnv({ WSDS_POLICY_FILE: ' ' }), undefined)
    assert.equal(policyFileFromEnv({ WSDS_POLICY_FILE: 'ssm:/wsds/policy' }), 'ssm:/wsds/policy')
    assert.equal(policyFileFromEnv({ WSDS_POLICY_FILE: './rules.yaml' }), BUNDLED_POLICY_PATH)
    assert.throws(() => policyFileFromEnv({ WSDS_POLICY_FILE: 'ssm:/bad name' }))
  })
})

describe('npm run bundle:aws with WSDS_POLICY_FILE', () => {
  it('adds the rules to the zip as policy.json (YAML converted), and refuses a bad file naming the rule', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wsds-bundle-policy-'))
    const yamlPath = join(dir, 'rules.yaml')
    writeFileSync(yamlPath, POLICY_YAML)
    const out = join(dir, 'out')
    const { zip } = await bundleLambdas(out, { policyFile: yamlPath })
    const data = JSON.parse(readFileSync(join(out, POLICY_BUNDLE_NAME), 'utf8')) as { rules: { name: string }[] }
    assert.deepEqual(data.rules.map((r) => r.name), ['admin', 'health-probe', 'mobile-app', 'partner', 'exports-need-a-page'])
    assert.ok(readFileSync(zip).includes(Buffer.from(POLICY_BUNDLE_NAME)), 'the zip holds policy.json')
    const bad = join(dir, 'bad.json')
    writeFileSync(bad, JSON.stringify({ rules: [{ name: 'oops', match: { path: '/x' }, action: 'maybe' }] }))
    await assert.rejects(bundleLambdas(join(dir, 'out2'), { policyFile: bad }), (err: Error) => /oops/.test(err.message) && /action/.test(err.message))
  })
})
