/**
 * The AWS deployment of WSDS: API Gateway WebSocket API + Lambda + a Step Functions
 * (Standard) state machine + DynamoDB, and a REST API whose Lambda REQUEST authorizer admits
 * verified connection ids. The state machine defined here is also what `npm run aws:local`
 * runs (from the synthesized template), so the local run tests this definition, not a copy.
 */
import {
  CfnCondition,
  CfnOutput,
  ArnFormat,
  Aws,
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
  aws_events as events,
  aws_events_targets as eventTargets,
  aws_iam as iam,
  aws_lambda as lambda,
  aws_cloudwatch as cloudwatch,
  aws_logs as logs,
  aws_s3 as s3,
  aws_stepfunctions as sfn,
  aws_stepfunctions_tasks as tasks,
} from 'aws-cdk-lib'
import type { Construct } from 'constructs'
import { SWEEP_INDEX } from '../src/aws/table.ts'

export const STAGE_NAME = 'live'

export interface WsdsStackProps extends StackProps {
  /**
   * Where the Lambda code comes from: `asset` = the bundles in `assetDir`, uploaded by
   * `cdk deploy`; `parameters` = a zip in S3 named by the LambdaCodeBucket / LambdaCodeKey
   * parameters (the committed template, for CloudFormation without CDK).
   */
  code: 'asset' | 'parameters'
  assetDir?: string
  /**
   * The REST authorizer's cache TTL, seconds (WSDS_AUTH_CACHE_TTL_MS rounded up; default 5).
   * Synth-time, not a parameter: an authorizer change needs a new stage deployment, so the
   * Deployment's logical id is derived from it, and a logical id cannot depend on a parameter.
   */
  authorizerTtlSeconds?: number
  /**
   * WSDS_POLICY_FILE for the authorizer (synth-time, like the TTL): the bundled file's path
   * (`npm run bundle:aws` copies it into the zip as policy.json, infra/bundle.ts) or
   * `ssm:/<parameter name>`. Set: the authorizer runs for every request (no identity source,
   * no cache), since `allow` rules admit requests that carry no id, and a `deny` is 403
   * {"error":"forbidden"}. Unset: no rules, the connectionId identity source and the TTL.
   */
  policyFile?: string
}

/** The Lambda functions: bundle file (src/aws/lambda/<name>.ts) per function. */
export const FUNCTIONS = ['connect', 'disconnect', 'message', 'timer', 'authorizer', 'greeting', 'sweeper'] as const
export type FunctionName = (typeof FUNCTIONS)[number]

/** The S3 key must name its content (npm run bundle:aws writes lambda-<sha256 prefix>.zip), so new code means a new key. */
export const CODE_KEY_PATTERN = '^(.*/)?lambda-[0-9a-f]{16}\\.zip$'

export const DEFAULT_AUTHORIZER_TTL_SECONDS = 5

/** Where a bundled rules file lands in the Lambda zip (infra/bundle.ts), as the authorizer reads it. */
export const BUNDLED_POLICY_PATH = '/var/task/policy.json'

export class WsdsStack extends Stack {
  constructor(scope: Construct, id: string, props: WsdsStackProps) {
    super(scope, id, props)
    const policyFile = props.policyFile ?? null
    // Rules read the method, path, address and service token, which no cache key holds.
    const authorizerTtl = policyFile === null ? (props.authorizerTtlSeconds ?? DEFAULT_AUTHORIZER_TTL_SECONDS) : 0

    // --- parameters: the PROTOCOL.md configuration names, as the functions' environment ---
    const allowedOrigins = new CfnParameter(this, 'AllowedOrigins', {
      type: 'String',
      description: 'WSDS_ALLOWED_ORIGINS: comma-separated origins (scheme://host[:port]) whose pages may connect',
    })
    const corsOrigins = new CfnParameter(this, 'CorsOrigins', {
      type: 'String',
      default: '',
      description: 'WSDS_CORS_ORIGINS: origins whose pages may call the REST API cross-origin, or none (empty: AllowedOrigins)',
    })
    const keySetStore = new CfnParameter(this, 'KeySetStore', {
      type: 'String',
      default: 'ssm',
      allowedValues: ['ssm', 'secretsmanager'],
      description: 'Where the key sets live: ssm (SecureString parameters) or secretsmanager (secrets); the functions may read exactly the named ones',
    })
    const keySetName = new CfnParameter(this, 'KeySetName', {
      type: 'String',
      default: 'wsds/keyset',
      allowedPattern: '^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$',
      description: 'The current key set: SSM parameter /<name>, or Secrets Manager secret <name>',
    })
    const previousKeySetName = new CfnParameter(this, 'PreviousKeySetName', {
      type: 'String',
      default: '',
      allowedPattern: '^([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?$',
      description: 'A key set still accepted during a rollout (same store), or empty',
    })
    // Whole seconds, because the state machine's wait counts whole seconds (TimeoutSeconds);
    // the functions get it in ms as WSDS_CHALLENGE_TIMEOUT_MS.
    const challengeTimeout = new CfnParameter(this, 'ChallengeTimeoutSeconds', {
      type: 'Number',
      default: 10,
      minValue: 1,
      maxValue: 600,
      description: 'WSDS_CHALLENGE_TIMEOUT_MS / 1000: answer deadline, and the TimeoutSeconds of the wait that enforces it',
    })
    const rateLimit = new CfnParameter(this, 'RateLimitPerSecond', {
      type: 'Number',
      default: 200,
      minValue: 1,
      description: 'WSDS_RATE_LIMIT: stage throttling of both APIs, requests per second (bursts of 2x)',
    })
    const rateBurst = new CfnParameter(this, 'RateLimitBurst', {
      type: 'Number',
      default: 400,
      minValue: 1,
      description: 'Stage throttling burst, requests (WSDS_RATE_LIMIT bursts are 2x the rate)',
    })
    const logRetention = new CfnParameter(this, 'LogRetentionDays', {
      type: 'Number',
      default: 14,
      allowedValues: ['1', '3', '5', '7', '14', '30', '60', '90', '180', '365'],
      description: 'Retention of the functions\' CloudWatch log groups, days',
    })
    const alarmTopic = new CfnParameter(this, 'AlarmTopicArn', {
      type: 'String',
      default: '',
      description: 'SNS topic the alarms notify (empty: alarms without actions)',
    })
    const alarmThreshold = new CfnParameter(this, 'AlarmThreshold', {
      type: 'Number',
      default: 5,
      minValue: 1,
      description: 'Alarm when 5xx responses, authorizer errors or failed executions reach this many in 5 minutes',
    })
    const rechallenge = new CfnParameter(this, 'RechallengeMs', {
      type: 'String',
      default: 'off',
      allowedPattern: '^(off|[0-9]+)$',
      constraintDescription: 'off, or whole milliseconds (at least 1000)',
      description: 'WSDS_RECHALLENGE_MS: re-challenge verified connections at this interval (the sweeper, every minute by EventBridge), or off',
    })
    const powBits = new CfnParameter(this, 'PowBits', {
      type: 'Number',
      default: 0,
      minValue: 0,
      maxValue: 32,
      description: 'WSDS_POW_BITS: proof of work in every challenge, leading zero bits of SHA-256 (0 = none)',
    })
    const useSsm = new CfnCondition(this, 'KeySetsInSsm', { expression: Fn.conditionEquals(keySetStore.valueAsString, 'ssm') })
    const hasPrevious = new CfnCondition(this, 'HasPreviousKeySet', { expression: Fn.conditionNot(Fn.conditionEquals(previousKeySetName.valueAsString, '')) })
    const hasTopic = new CfnCondition(this, 'HasAlarmTopic', { expression: Fn.conditionNot(Fn.conditionEquals(alarmTopic.valueAsString, '')) })
    const hasCors = new CfnCondition(this, 'HasCorsOrigins', { expression: Fn.conditionNot(Fn.conditionEquals(corsOrigins.valueAsString, '')) })

    // --- the connections table: records and their aliases, DynamoDB TTL on `ttl` (epoch s) ---
    const table = new dynamodb.Table(this, 'Connections', {
      partitionKey: { name: 'connectionId', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      // TTL deletion is lazy, so reads filter on expiresAt too (src/stores/dynamodb.ts).
      timeToLiveAttribute: 'ttl',
      // Records live for one connection at most: nothing worth keeping after a teardown.
      removalPolicy: RemovalPolicy.DESTROY,
    })
    // Sparse: only records the sweeper must look at carry its keys (src/aws/table.ts), so its
    // Query reads due connections only. Keys only: the sweeper re-reads each record anyway.
    table.addGlobalSecondaryIndex({
      indexName: SWEEP_INDEX,
      partitionKey: { name: 'sweepShard', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sweepAt', type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.KEYS_ONLY,
    })

    // --- functions ---
    let code: lambda.Code
    if (props.code === 'asset') {
      code = lambda.Code.fromAsset(props.assetDir ?? 'dist/aws')
    } else {
      const bucket = new CfnParameter(this, 'LambdaCodeBucket', { type: 'String', description: 'S3 bucket holding the Lambda zip' })
      const key = new CfnParameter(this, 'LambdaCodeKey', {
        type: 'String',
        allowedPattern: CODE_KEY_PATTERN,
        constraintDescription: 'must be the lambda-<hash>.zip that npm run bundle:aws writes: a new key for new code, so CloudFormation updates the functions',
        description: 'S3 key of the Lambda zip (dist/aws/lambda-<hash>.zip)',
      })
      code = lambda.Code.fromBucket(s3.Bucket.fromBucketName(this, 'CodeBucket', bucket.valueAsString), key.valueAsString)
    }
    const common = {
      WSDS_TABLE: table.tableName,
      WSDS_ALLOWED_ORIGINS: allowedOrigins.valueAsString,
      WSDS_CHALLENGE_TIMEOUT_MS: Fn.join('', [challengeTimeout.valueAsString, '000']),
      NODE_OPTIONS: '--enable-source-maps',
    }
    const fns = {} as Record<FunctionName, lambda.Function>
    for (const name of FUNCTIONS) {
      const logGroup = new logs.LogGroup(this, `${fnId(name)}Logs`, { removalPolicy: RemovalPolicy.DESTROY })
      ;(logGroup.node.defaultChild as logs.CfnLogGroup).retentionInDays = logRetention.valueAsNumber
      fns[name] = new lambda.Function(this, fnId(name), {
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        memorySize: 256,
        // The sweeper sweeps for 55 s of each minute when the interval is short (src/aws/sweeper.ts).
        timeout: Duration.seconds(name === 'sweeper' ? 70 : 10),
        code,
        handler: `${name}.handler`,
        environment: common,
        logGroup,
      })
    }
    // Exactly the named parameter or secret: SSM ARNs drop the name's leading slash; secret
    // ARNs end in -<6 random characters>, which the IAM wildcard ?????? matches and nothing longer.
    const keyArn = (name: string) =>
      Fn.conditionIf(
        useSsm.logicalId,
        this.formatArn({ service: 'ssm', resource: 'parameter', resourceName: name }),
        this.formatArn({ service: 'secretsmanager', resource: 'secret', resourceName: `${name}-??????`, arnFormat: ArnFormat.COLON_RESOURCE_NAME }),
      ).toString()
    const prefix = Fn.conditionIf(useSsm.logicalId, 'ssm:/', 'secretsmanager:').toString()
    const keysFile = Fn.join('', [prefix, keySetName.valueAsString, Fn.conditionIf(hasPrevious.logicalId, Fn.join('', [',', prefix, previousKeySetName.valueAsString]), '').toString()])
    const readKeys = new iam.PolicyStatement({
      actions: [Fn.conditionIf(useSsm.logicalId, 'ssm:GetParameter', 'secretsmanager:GetSecretValue').toString()],
      resources: [keyArn(keySetName.valueAsString), Fn.conditionIf(hasPrevious.logicalId, keyArn(previousKeySetName.valueAsString), Aws.NO_VALUE).toString()],
    })
    for (const name of ['message', 'timer', 'sweeper'] as const) {
      fns[name].addEnvironment('WSDS_KEYS_FILE', keysFile)
      fns[name].addToRolePolicy(readKeys)
      // The functions that issue challenges: the first (message), after a lost race (timer), re-challenges (sweeper).
      fns[name].addEnvironment('WSDS_RECHALLENGE_MS', rechallenge.valueAsString)
      fns[name].addEnvironment('WSDS_POW_BITS', powBits.valueAsString)
    }
    if (policyFile !== null) {
      fns.authorizer.addEnvironment('WSDS_POLICY_FILE', policyFile)
      if (policyFile.startsWith('ssm:')) {
        fns.authorizer.addToRolePolicy(
          new iam.PolicyStatement({ actions: ['ssm:GetParameter'], resources: [this.formatArn({ service: 'ssm', resource: 'parameter', resourceName: policyFile.slice(4).replace(/^\//, '') })] }),
        )
      }
    }
    fns.greeting.addEnvironment('WSDS_CORS_ORIGINS', Fn.conditionIf(hasCors.logicalId, corsOrigins.valueAsString, allowedOrigins.valueAsString).toString())

    // --- WebSocket API: every frame to one function, where the lifecycle decides ---
    const ws = new apigwv2.WebSocketApi(this, 'WebSocketApi', {
      routeSelectionExpression: '$request.body.action',
      connectRouteOptions: { integration: new integrations.WebSocketLambdaIntegration('ConnectIntegration', fns.connect) },
      disconnectRouteOptions: { integration: new integrations.WebSocketLambdaIntegration('DisconnectIntegration', fns.disconnect) },
      defaultRouteOptions: { integration: new integrations.WebSocketLambdaIntegration('DefaultIntegration', fns.message) },
    })
    const stage = new apigwv2.WebSocketStage(this, 'WebSocketStage', { webSocketApi: ws, stageName: STAGE_NAME, autoDeploy: true })
    ;(stage.node.defaultChild as apigwv2.CfnStage).defaultRouteSettings = {
      throttlingRateLimit: rateLimit.valueAsNumber,
      throttlingBurstLimit: rateBurst.valueAsNumber,
    }
    const manageConnections = new iam.PolicyStatement({
      actions: ['execute-api:ManageConnections'],
      resources: [this.formatArn({ service: 'execute-api', resource: ws.apiId, resourceName: `${STAGE_NAME}/*/@connections/*` })],
    })
    for (const name of ['message', 'timer', 'authorizer', 'sweeper'] as const) {
      fns[name].addEnvironment('WSDS_CONNECTIONS_URL', stage.callbackUrl)
      fns[name].addToRolePolicy(manageConnections)
    }

    // --- the deadline: one Standard execution per armed deadline, one state on the happy path ---
    const target = { connectionId: sfn.JsonPath.stringAt('$.connectionId'), at: sfn.JsonPath.numberAt('$.at') }
    const retryOnce = { errors: ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException'], maxAttempts: 1, interval: Duration.seconds(1) }
    // Why: the wait that enforces the challenge deadline. A verdict (or $disconnect) ends it
    // with SendTaskSuccess: one billed transition per handshake.
    const wait = new tasks.LambdaInvoke(this, 'Wait', {
      comment: 'Store the task token on the record, then wait for a verdict or the deadline',
      lambdaFunction: fns.timer,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      payload: sfn.TaskInput.fromObject({ op: 'arm', ...target, taskToken: sfn.JsonPath.taskToken }),
      taskTimeout: sfn.Timeout.duration(Duration.seconds(challengeTimeout.valueAsNumber)),
      resultPath: sfn.JsonPath.DISCARD,
      retryOnServiceExceptions: false,
    })
    wait.addRetry(retryOnce)
    const fire = new tasks.LambdaInvoke(this, 'Deadline', {
      comment: 'No verdict in time: deliver the deadline event (rejected timeout, close)',
      lambdaFunction: fns.timer,
      payloadResponseOnly: true,
      payload: sfn.TaskInput.fromObject({ op: 'fire', ...target }),
      resultPath: sfn.JsonPath.DISCARD,
      retryOnServiceExceptions: false,
    })
    fire.addRetry(retryOnce)
    wait.addCatch(fire, { errors: [sfn.Errors.TIMEOUT], resultPath: sfn.JsonPath.DISCARD })
    wait.addCatch(new sfn.Succeed(this, 'Disarmed', { comment: 'A verdict came before the wait stored its token: nothing to wait for' }), { errors: ['Disarmed'], resultPath: sfn.JsonPath.DISCARD })
    // Named, and its ARN built from the name: the timer function both runs in the machine and
    // starts executions of it, which by reference would be a circular dependency.
    const machineName = Fn.join('-', [Aws.STACK_NAME, 'deadline'])
    const machineArn = this.formatArn({ service: 'states', resource: 'stateMachine', resourceName: machineName, arnFormat: ArnFormat.COLON_RESOURCE_NAME })
    const machine = new sfn.StateMachine(this, 'Handshake', {
      stateMachineName: machineName,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(wait),
      comment: 'WSDS challenge deadline: one execution per armed deadline, ended by the verdict or by the timeout',
      // A safety net far above any deadline (at most 600 s) plus the deadline task.
      timeout: Duration.minutes(15),
    })
    for (const name of ['message', 'timer'] as const) fns[name].addEnvironment('WSDS_STATE_MACHINE_ARN', machineArn)

    // --- least privilege: each function gets exactly the calls it makes ---
    const onTable = (fn: lambda.Function, ...actions: string[]) => fn.addToRolePolicy(new iam.PolicyStatement({ actions: actions.map((a) => `dynamodb:${a}`), resources: [table.tableArn] }))
    const onMachine = (fn: lambda.Function, ...actions: string[]) => fn.addToRolePolicy(new iam.PolicyStatement({ actions: actions.map((a) => `states:${a}`), resources: [machineArn] }))
    const onTasks = (fn: lambda.Function) => fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['states:SendTaskSuccess'], resources: [machineArn] }))
    onTable(fns.connect, 'PutItem')
    onTable(fns.disconnect, 'DeleteItem')
    onTasks(fns.disconnect)
    onTable(fns.message, 'GetItem', 'UpdateItem')
    onMachine(fns.message, 'StartExecution', 'SendTaskSuccess')
    onTable(fns.timer, 'GetItem', 'UpdateItem')
    onMachine(fns.timer, 'StartExecution', 'SendTaskSuccess')
    onTable(fns.authorizer, 'GetItem', 'DeleteItem')
    // Scan: the operator's re-challenge of an origin or of all (`op: rechallenge`).
    onTable(fns.sweeper, 'GetItem', 'UpdateItem', 'DeleteItem', 'Scan')
    fns.sweeper.addToRolePolicy(new iam.PolicyStatement({ actions: ['dynamodb:Query'], resources: [Fn.join('', [table.tableArn, `/index/${SWEEP_INDEX}`])] }))

    // --- re-challenges: the sweeper, every minute. Enabled with re-challenges off too: it
    // also enforces the deadlines of operator re-challenges (about $0.07 a month idle, docs/aws.md).
    new events.Rule(this, 'SweepSchedule', {
      description: 'WSDS re-challenge sweeper (WSDS_RECHALLENGE_MS): due connections and missed re-challenge deadlines',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new eventTargets.LambdaFunction(fns.sweeper, { event: events.RuleTargetInput.fromObject({ op: 'sweep' }) })],
    })

    // --- REST API: the protected greeting and forward auth behind the authorizer ---
    const rest = new apigw.RestApi(this, 'RestApi', {
      description: 'WSDS-protected REST API: requests carry the verified connectionId header',
      deployOptions: { stageName: STAGE_NAME, throttlingRateLimit: rateLimit.valueAsNumber, throttlingBurstLimit: rateBurst.valueAsNumber },
      cloudWatchRole: false,
    })
    // An authorizer change reaches clients only through a new deployment.
    rest.latestDeployment?.addToLogicalId({ authorizerTtl, ...(policyFile === null ? {} : { policyFile }) })
    const authorizer = new apigw.RequestAuthorizer(this, 'Authorizer', {
      handler: fns.authorizer,
      // API Gateway answers 401 itself, without calling the function, when the header is
      // missing: right without rules, wrong with them (an `allow` rule admits id-less requests).
      identitySources: policyFile === null ? [apigw.IdentitySource.header('connectionId')] : [],
      resultsCacheTtl: Duration.seconds(authorizerTtl),
    })
    // No identity source at all, rather than an empty one: optional when the cache is off.
    if (policyFile !== null) (authorizer.node.findChild('Resource') as apigw.CfnAuthorizer).addPropertyDeletionOverride('IdentitySource')
    // Preflights carry no id (browsers never send custom headers on OPTIONS): answered by the
    // greeting function's CORS check (src/aws/rest.ts), with no authorizer.
    const preflight = new apigw.LambdaIntegration(fns.greeting, { allowTestInvoke: false })
    const greetingResource = rest.root.addResource('greeting')
    greetingResource.addMethod('GET', new apigw.LambdaIntegration(fns.greeting, { allowTestInvoke: false }), { authorizer })
    greetingResource.addMethod('OPTIONS', preflight)
    // GET /wsds/auth: 204 with the admitted id's headers (PROTOCOL.md forward auth), no function behind it.
    const authHeaders: Record<string, string> = {
      'x-wsds-connection-id': 'connectionId',
      'x-wsds-origin': 'origin',
      'x-wsds-verdict': 'verdict',
      // The rule that decided (the authorizer always sets it when rules are in force).
      ...(policyFile === null ? {} : { 'x-wsds-rule': 'rule' }),
    }
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
    // Refusals readable by a cross-origin page: the body says nothing an id's owner does not know.
    const corsHeaders = { 'Access-Control-Allow-Origin': 'method.request.header.Origin', Vary: "'Origin'" }
    // The authorizer throws "Unauthorized" (401); a missing header is 401 too. ACCESS_DENIED
    // (403, an explicit Deny) is mapped as well, so no refusal ever leaves as a 403.
    rest.addGatewayResponse('Unauthorized', { type: apigw.ResponseType.UNAUTHORIZED, statusCode: '401', templates: unauthorized, responseHeaders: corsHeaders })
    // With rules and no cache, the only explicit Deny is a `deny` rule's: 403 forbidden
    // (PROTOCOL.md, "Policy rules"). Without rules it is a cached Allow for another path: 401.
    rest.addGatewayResponse(
      'AccessDenied',
      policyFile === null
        ? { type: apigw.ResponseType.ACCESS_DENIED, statusCode: '401', templates: unauthorized, responseHeaders: corsHeaders }
        : { type: apigw.ResponseType.ACCESS_DENIED, statusCode: '403', templates: { 'application/json': '{"error":"forbidden"}' }, responseHeaders: corsHeaders },
    )
    rest.addGatewayResponse('AuthorizerFailure', {
      type: apigw.ResponseType.AUTHORIZER_FAILURE,
      statusCode: '503',
      templates: { 'application/json': '{"error":"store-unavailable"}' },
      responseHeaders: { 'retry-after': "'1'", ...corsHeaders },
    })

    // --- alarms: 5xx from the REST API, authorizer errors, failed deadline executions ---
    const alarm = (id: string, metric: cloudwatch.IMetric, description: string) => {
      const a = new cloudwatch.Alarm(this, id, {
        metric,
        threshold: alarmThreshold.valueAsNumber,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      })
      ;(a.node.defaultChild as cloudwatch.CfnAlarm).addPropertyOverride('AlarmActions', Fn.conditionIf(hasTopic.logicalId, [alarmTopic.valueAsString], Aws.NO_VALUE))
    }
    const fiveMinutes = { period: Duration.minutes(5), statistic: 'Sum' }
    alarm('RestApi5xxAlarm', rest.metricServerError(fiveMinutes), 'REST API 5xx responses (503 store-unavailable included)')
    alarm('AuthorizerErrorsAlarm', fns.authorizer.metricErrors(fiveMinutes), 'Authorizer function errors (answered 503)')
    alarm('ExecutionsFailedAlarm', machine.metricFailed(fiveMinutes), 'Deadline executions that failed (the deadline task could not run)')

    new CfnOutput(this, 'WebSocketUrl', { value: stage.url, description: 'wss:// URL for the client SDK' })
    new CfnOutput(this, 'RestApiUrl', { value: rest.url, description: 'Base URL of the protected REST API' })
    new CfnOutput(this, 'TableName', { value: table.tableName })
    new CfnOutput(this, 'StateMachineArn', { value: machine.stateMachineArn })
    new CfnOutput(this, 'SweeperFunctionName', { value: fns.sweeper.functionName, description: 'Operator re-challenges: aws lambda invoke --function-name <this> --payload \'{"op":"rechallenge","all":true}\'' })
  }
}

/** `issue-challenge` -> `IssueChallengeFunction`: stable construct ids. */
export function fnId(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, __, c: string) => c.toUpperCase()) + 'Function'
}

/**
 * WSDS_POLICY_FILE at synth time: `ssm:/<name>` is passed on; a path is bundled
 * (infra/bundle.ts) and read from BUNDLED_POLICY_PATH; unset or blank: no rules.
 */
export function policyFileFromEnv(env: Record<string, string | undefined>): string | undefined {
  const text = env.WSDS_POLICY_FILE?.trim()
  if (text === undefined || text === '') return undefined
  if (text.startsWith('ssm:')) {
    if (!/^ssm:\/?[A-Za-z0-9_.\-/]+$/.test(text)) throw new Error(`WSDS_POLICY_FILE=${JSON.stringify(text)}: not an SSM parameter name`)
    return text
  }
  return BUNDLED_POLICY_PATH
}

/** WSDS_AUTH_CACHE_TTL_MS (PROTOCOL.md: on AWS rounded up to whole seconds, at most 3600). */
export function authorizerTtlFromEnv(env: Record<string, string | undefined>): number {
  const text = env.WSDS_AUTH_CACHE_TTL_MS
  if (text === undefined || text.trim() === '') return DEFAULT_AUTHORIZER_TTL_SECONDS
  const ms = Number(text)
  if (!/^\d+$/.test(text.trim()) || ms > 3_600_000) throw new Error(`WSDS_AUTH_CACHE_TTL_MS=${JSON.stringify(text)}: must be whole ms in [0, 3600000]`)
  return Math.ceil(ms / 1000)
}
