/**
 * The AWS deployment of WSDS (issue 6): API Gateway WebSocket API + Lambda + a Step Functions
 * (Standard) state machine + DynamoDB, and a REST API whose Lambda REQUEST authorizer admits
 * verified connection ids. The state machine defined here is also what `npm run aws:local`
 * runs (from the synthesized template), so the local run tests this definition, not a copy.
 */
import {
  CfnOutput,
  CfnParameter,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  type StackProps,
  aws_apigateway as apigw,
  aws_apigatewayv2 as apigwv2,
  aws_apigatewayv2_integrations as integrations,
  aws_dynamodb as dynamodb,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_s3 as s3,
  aws_stepfunctions as sfn,
  aws_stepfunctions_tasks as tasks,
} from 'aws-cdk-lib'
import type { Construct } from 'constructs'

export const STAGE_NAME = 'live'

export interface WsdsStackProps extends StackProps {
  /**
   * Where the Lambda code comes from: `asset` = the bundles in `assetDir`, uploaded by
   * `cdk deploy`; `parameters` = a zip in S3 named by the LambdaCodeBucket / LambdaCodeKey
   * parameters (the committed template, for CloudFormation without CDK).
   */
  code: 'asset' | 'parameters'
  assetDir?: string
}

/** The Lambda functions: bundle file (src/aws/lambda/<name>.ts) per function. */
export const FUNCTIONS = ['connect', 'disconnect', 'hello', 'answer', 'message', 'issue-challenge', 'finish', 'authorizer', 'greeting'] as const
export type FunctionName = (typeof FUNCTIONS)[number]

export class WsdsStack extends Stack {
  constructor(scope: Construct, id: string, props: WsdsStackProps) {
    super(scope, id, props)

    // --- parameters: the PROTOCOL.md configuration names, as the functions' environment ---
    const allowedOrigins = new CfnParameter(this, 'AllowedOrigins', {
      type: 'String',
      description: 'WSDS_ALLOWED_ORIGINS: comma-separated origins (scheme://host[:port]) whose pages may connect',
    })
    const keySets = new CfnParameter(this, 'KeySets', {
      type: 'String',
      default: 'ssm:/wsds/keyset',
      allowedPattern: '^((ssm:/wsds/|secretsmanager:wsds/)[A-Za-z0-9_./-]+)(,(ssm:/wsds/|secretsmanager:wsds/)[A-Za-z0-9_./-]+)*$',
      description:
        'WSDS_KEYS_FILE: comma-separated key sets, current first, each ssm:/wsds/<name> (SecureString) or secretsmanager:wsds/<name>; the functions may read only these namespaces',
    })
    // Whole seconds, because the state machine's wait counts whole seconds (TimeoutSeconds);
    // the functions get it in ms as WSDS_CHALLENGE_TIMEOUT_MS.
    const challengeTimeout = new CfnParameter(this, 'ChallengeTimeoutSeconds', {
      type: 'Number',
      default: 10,
      minValue: 1,
      maxValue: 600,
      description: 'WSDS_CHALLENGE_TIMEOUT_MS / 1000: answer deadline from hello, and the TimeoutSeconds of the wait for the answer',
    })
    const authorizerTtl = new CfnParameter(this, 'AuthorizerCacheTtlSeconds', {
      type: 'Number',
      default: 5,
      minValue: 0,
      maxValue: 3600,
      description:
        'WSDS_AUTH_CACHE_TTL_MS / 1000: how long API Gateway caches an Allow per connectionId. This is the revocation bound: a closed id is admitted up to this long',
    })

    // --- the connections table: one item per connection, DynamoDB TTL on `ttl` (epoch s) ---
    const table = new dynamodb.Table(this, 'Connections', {
      partitionKey: { name: 'connectionId', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      // TTL deletion is lazy, so reads filter on expiresAt too (src/stores/dynamodb.ts).
      timeToLiveAttribute: 'ttl',
      // Records live for one connection at most: nothing worth keeping after a teardown.
      removalPolicy: RemovalPolicy.DESTROY,
    })

    // --- functions ---
    let code: lambda.Code
    if (props.code === 'asset') {
      code = lambda.Code.fromAsset(props.assetDir ?? 'dist/aws')
    } else {
      const bucket = new CfnParameter(this, 'LambdaCodeBucket', { type: 'String', description: 'S3 bucket holding the Lambda zip (npm run bundle:aws writes dist/aws/lambda.zip)' })
      const key = new CfnParameter(this, 'LambdaCodeKey', { type: 'String', default: 'wsds/lambda.zip', description: 'S3 key of the Lambda zip' })
      code = lambda.Code.fromBucket(s3.Bucket.fromBucketName(this, 'CodeBucket', bucket.valueAsString), key.valueAsString)
    }
    const common = {
      WSDS_TABLE: table.tableName,
      WSDS_ALLOWED_ORIGINS: allowedOrigins.valueAsString,
      WSDS_CHALLENGE_TIMEOUT_MS: Fn.join('', [challengeTimeout.valueAsString, '000']),
    }
    const fns = {} as Record<FunctionName, lambda.Function>
    for (const name of FUNCTIONS) {
      fns[name] = new lambda.Function(this, fnId(name), {
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        memorySize: 256,
        timeout: Duration.seconds(10),
        code,
        handler: `${name}.handler`,
        environment: { ...common, NODE_OPTIONS: '--enable-source-maps' },
        description: `WSDS ${name}`,
      })
    }
    for (const name of ['hello', 'issue-challenge'] as const) fns[name].addEnvironment('WSDS_KEYS_FILE', keySets.valueAsString)

    // --- WebSocket API: routes on $request.body.action, each to its own function ---
    const ws = new apigwv2.WebSocketApi(this, 'WebSocketApi', {
      routeSelectionExpression: '$request.body.action',
      connectRouteOptions: { integration: new integrations.WebSocketLambdaIntegration('ConnectIntegration', fns.connect) },
      disconnectRouteOptions: { integration: new integrations.WebSocketLambdaIntegration('DisconnectIntegration', fns.disconnect) },
      defaultRouteOptions: { integration: new integrations.WebSocketLambdaIntegration('DefaultIntegration', fns.message) },
    })
    ws.addRoute('hello', { integration: new integrations.WebSocketLambdaIntegration('HelloIntegration', fns.hello) })
    ws.addRoute('answer', { integration: new integrations.WebSocketLambdaIntegration('AnswerIntegration', fns.answer) })
    ws.addRoute('ping', { integration: new integrations.WebSocketLambdaIntegration('PingIntegration', fns.message) })
    const stage = new apigwv2.WebSocketStage(this, 'WebSocketStage', { webSocketApi: ws, stageName: STAGE_NAME, autoDeploy: true })
    const manageConnections = new iam.PolicyStatement({
      actions: ['execute-api:ManageConnections'],
      resources: [this.formatArn({ service: 'execute-api', resource: ws.apiId, resourceName: `${STAGE_NAME}/*/@connections/*` })],
    })
    for (const name of ['hello', 'answer', 'message', 'issue-challenge', 'finish'] as const) {
      fns[name].addEnvironment('WSDS_CONNECTIONS_URL', stage.callbackUrl)
      fns[name].addToRolePolicy(manageConnections)
    }

    // --- the handshake state machine (one Standard execution per hello) ---
    const payload = {
      connectionId: sfn.JsonPath.stringAt('$.connectionId'),
    }
    // Why: draws the challenge, stores the expected answer with this task's token, and
    // sends it; the execution then waits, at no cost, until the answer handler reports.
    const issueChallenge = new tasks.LambdaInvoke(this, 'IssueChallenge', {
      comment: 'Send the challenge and wait for the answer handler to report with the task token, at most the challenge deadline',
      lambdaFunction: fns['issue-challenge'],
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: sfn.TaskInput.fromObject({
        ...payload,
        keySetId: sfn.JsonPath.stringAt('$.keySetId'),
        hostname: sfn.JsonPath.stringAt('$.hostname'),
        timeoutMs: sfn.JsonPath.numberAt('$.timeoutMs'),
        taskToken: sfn.JsonPath.taskToken,
      }),
      // The deadline, as a parameter in the template (the local run substitutes its own).
      taskTimeout: sfn.Timeout.duration(Duration.seconds(challengeTimeout.valueAsNumber)),
      resultPath: '$.answer',
    })
    const finish = (id: string, comment: string, outcome: string) =>
      new tasks.LambdaInvoke(this, id, {
        comment,
        lambdaFunction: fns.finish,
        payloadResponseOnly: true,
        payload: sfn.TaskInput.fromObject({ ...payload, outcome }),
        resultPath: sfn.JsonPath.DISCARD,
      })
    const markVerified = finish('MarkVerified', 'Mark the record verified (only if the socket is still open), then send verified', 'verified')
    const rejected = finish(
      'Rejected',
      'The answer failed (wrong-answer, bad-domain, late) or the socket closed: send rejected with the reason and close',
      sfn.JsonPath.stringAt('$.rejection.Error'),
    )
    const timedOut = finish('TimedOut', 'No answer before the deadline: send rejected timeout and close', 'timeout')
    issueChallenge.addCatch(timedOut, { errors: [sfn.Errors.TIMEOUT], resultPath: '$.rejection' })
    issueChallenge.addCatch(rejected, { errors: [sfn.Errors.ALL], resultPath: '$.rejection' })
    // Why a Choice: the answer handler reports success only for a verified answer, but the
    // machine checks the verdict itself rather than trust that any success means verified.
    const accepted = new sfn.Choice(this, 'AnswerAccepted', { comment: 'Only the verdict "verified" verifies' })
      .when(sfn.Condition.stringEquals('$.answer.verdict', 'verified'), markVerified)
      .otherwise(new sfn.Fail(this, 'UnexpectedAnswer', { comment: 'A success output without a verified verdict: a bug, not a client', error: 'UnexpectedAnswer' }))
    const machine = new sfn.StateMachine(this, 'Handshake', {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(issueChallenge.next(accepted)),
      comment: 'WSDS handshake: one execution per hello; challenge, wait for the answer, then verified or rejected',
      // A safety net far above any deadline (at most 600 s) plus the outcome tasks.
      timeout: Duration.minutes(15),
    })
    fns.hello.addEnvironment('WSDS_STATE_MACHINE_ARN', machine.stateMachineArn)

    // --- least privilege: each function gets exactly the calls it makes ---
    const onTable = (fn: lambda.Function, ...actions: string[]) => fn.addToRolePolicy(new iam.PolicyStatement({ actions: actions.map((a) => `dynamodb:${a}`), resources: [table.tableArn] }))
    const onMachine = (fn: lambda.Function, ...actions: string[]) => fn.addToRolePolicy(new iam.PolicyStatement({ actions: actions.map((a) => `states:${a}`), resources: [machine.stateMachineArn] }))
    onTable(fns.connect, 'PutItem')
    onTable(fns.disconnect, 'DeleteItem')
    onMachine(fns.disconnect, 'SendTaskFailure')
    onTable(fns.hello, 'UpdateItem')
    onMachine(fns.hello, 'StartExecution')
    onTable(fns.answer, 'UpdateItem')
    onMachine(fns.answer, 'SendTaskSuccess', 'SendTaskFailure')
    onTable(fns['issue-challenge'], 'UpdateItem')
    onTable(fns.finish, 'UpdateItem')
    onTable(fns.authorizer, 'GetItem')
    const readKeys = new iam.PolicyStatement({
      actions: ['ssm:GetParameter', 'secretsmanager:GetSecretValue'],
      resources: [
        this.formatArn({ service: 'ssm', resource: 'parameter', resourceName: 'wsds/*' }),
        this.formatArn({ service: 'secretsmanager', resource: 'secret', resourceName: 'wsds/*', arnFormat: undefined }),
      ],
    })
    fns.hello.addToRolePolicy(readKeys)
    fns['issue-challenge'].addToRolePolicy(readKeys)

    // --- REST API: the protected greeting and forward auth behind the authorizer ---
    const rest = new apigw.RestApi(this, 'RestApi', {
      description: 'WSDS-protected REST API: requests carry the verified connectionId header',
      deployOptions: { stageName: STAGE_NAME },
      cloudWatchRole: false,
    })
    const authorizer = new apigw.RequestAuthorizer(this, 'Authorizer', {
      handler: fns.authorizer,
      // API Gateway answers 401 itself, without calling the function, when the header is missing.
      identitySources: [apigw.IdentitySource.header('connectionId')],
      resultsCacheTtl: Duration.seconds(authorizerTtl.valueAsNumber),
    })
    rest.root.addResource('greeting').addMethod('GET', new apigw.LambdaIntegration(fns.greeting), { authorizer })
    // GET /wsds/auth: 204 with the admitted id's headers (PROTOCOL.md forward auth), no function behind it.
    const authHeaders = { 'x-wsds-connection-id': 'connectionId', 'x-wsds-origin': 'origin', 'x-wsds-verdict': 'verdict' }
    rest.root.addResource('wsds').addResource('auth').addMethod(
      'GET',
      new apigw.MockIntegration({
        passthroughBehavior: apigw.PassthroughBehavior.NEVER,
        requestTemplates: { 'application/json': '{"statusCode": 204}' },
        integrationResponses: [
          {
            statusCode: '204',
            responseParameters: Object.fromEntries(Object.entries(authHeaders).map(([h, k]) => [`method.response.header.${h}`, `context.authorizer.${k}`])),
          },
        ],
      }),
      {
        authorizer,
        methodResponses: [{ statusCode: '204', responseParameters: Object.fromEntries(Object.keys(authHeaders).map((h) => [`method.response.header.${h}`, true])) }],
      },
    )
    const unauthorized = { 'application/json': '{"error":"unauthorized"}' }
    // The authorizer throws "Unauthorized" (401); a missing header is 401 too. ACCESS_DENIED
    // (403, an explicit Deny) is mapped as well, so no refusal ever leaves as a 403.
    rest.addGatewayResponse('Unauthorized', { type: apigw.ResponseType.UNAUTHORIZED, statusCode: '401', templates: unauthorized })
    rest.addGatewayResponse('AccessDenied', { type: apigw.ResponseType.ACCESS_DENIED, statusCode: '401', templates: unauthorized })
    rest.addGatewayResponse('AuthorizerFailure', {
      type: apigw.ResponseType.AUTHORIZER_FAILURE,
      statusCode: '503',
      templates: { 'application/json': '{"error":"store-unavailable"}' },
      responseHeaders: { 'retry-after': "'1'" },
    })

    new CfnOutput(this, 'WebSocketUrl', { value: stage.url, description: 'wss:// URL for the client SDK' })
    new CfnOutput(this, 'RestApiUrl', { value: rest.url, description: 'Base URL of the protected REST API' })
    new CfnOutput(this, 'TableName', { value: table.tableName })
    new CfnOutput(this, 'StateMachineArn', { value: machine.stateMachineArn })
  }
}

/** `issue-challenge` -> `IssueChallengeFunction`: stable construct ids. */
export function fnId(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, __, c: string) => c.toUpperCase()) + 'Function'
}
