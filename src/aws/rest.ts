/**
 * The REST side: the Lambda REQUEST authorizer and the protected demo greeting.
 *
 * The authorizer asks the same front as every self-hosted authenticator (core/front.ts),
 * with no cache of its own: API Gateway caches Allow results per `connectionId` header for
 * the authorizer TTL, which on AWS is the revocation bound (API Gateway cannot drop one
 * cached key). A refusal throws `Unauthorized`, which API Gateway answers 401 through the
 * UNAUTHORIZED gateway response (body `{"error":"unauthorized"}`, set in the stack); any
 * other throw is AUTHORIZER_FAILURE, mapped to 503 like the self-hosted store-unavailable.
 *
 * Lost `$disconnect`s (API Gateway calls it best effort): on every cache miss the
 * authorizer asks API Gateway whether a verified id's socket is still open (GetConnection);
 * a socket that is gone gets its record deleted and the request refused. So a dead socket's
 * id is admitted at most one authorizer TTL after API Gateway dropped it (docs/aws.md,
 * "Lost disconnects").
 */
import { createAuthenticator } from '../core/authenticator.ts'
import { createCorsPolicy } from '../core/cors.ts'
import { SIGNATURE_HEADER } from '../core/access.ts'
import { createFront, ORIGIN_RESPONSE_HEADER, CONNECTION_ID_RESPONSE_HEADER, RULE_HEADER, VERDICT_HEADER } from '../core/front.ts'
import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm'
import { WsdsError, isWsdsError } from '../core/errors.ts'
import { compilePolicy, serviceTokenFrom, type Policy, type PolicySource } from '../core/policy.ts'
import { nodeRequestMac } from '../crypto/node-binding.ts'
import { nodeSha256, parsePolicyText, readPolicyFile } from '../server/policy-file.ts'
import type { Store } from '../core/store.ts'
import type { AwsDeps } from './deps.ts'
import { header, type AuthorizerEvent, type AuthorizerResult, type ProxyEvent, type ProxyResult } from './events.ts'

/** The error message API Gateway turns into a 401. */
export const UNAUTHORIZED = 'Unauthorized'

/** `arn:aws:execute-api:region:account:api/stage/METHOD/path` -> the whole stage, so one cached Allow covers every method. */
export function stageWildcard(methodArn: string): string {
  // The first segment ends with the API id: arn:aws:execute-api:region:account:apiId
  const [api, stage] = methodArn.split('/')
  return `${api}/${stage}/*`
}

/**
 * The request-target for the decision (binding signs it). API Gateway's REQUEST authorizer
 * gets the path and the decoded query parameters, not the raw query, so the query is
 * re-encoded in order as URLSearchParams writes it, which is what the SDK sends for
 * parameters it builds itself (docs/aws.md, "Request binding on AWS").
 */
export function targetOf(event: AuthorizerEvent): string {
  // requestContext.path is the path as the client sent it, stage or base path included (the
  // event's own `path` is the resource path without them): what the page signed.
  const path = event.requestContext?.path ?? event.path ?? '/'
  const multi = event.multiValueQueryStringParameters
  const single = event.queryStringParameters
  const pairs: [string, string][] = []
  if (multi) for (const [k, vs] of Object.entries(multi)) for (const v of vs ?? []) pairs.push([k, v])
  else if (single) for (const [k, v] of Object.entries(single)) if (v !== undefined) pairs.push([k, v])
  return pairs.length === 0 ? path : `${path}?${new URLSearchParams(pairs).toString()}`
}

/** The store as the authorizer reads it: a verified record whose socket API Gateway dropped is gone. */
export function liveStore(deps: Pick<AwsDeps, 'store' | 'table' | 'connections' | 'log' | 'now'>): Store {
  return {
    ...deps.store,
    async get(id) {
      const item = await deps.table.load(id)
      if (item === null) return null
      // A re-challenge keeps the id admitted until its deadline, not until the sweeper gets
      // round to closing the socket (src/aws/sweeper.ts): past it, the id admits nothing.
      const deadlineAt = item.state?.outstanding ? item.state.deadlineAt : null
      if (deadlineAt !== null && deps.now() >= deadlineAt) return null
      if (item.record.status === 'verified' && !(await deps.connections.alive(item.gatewayId))) {
        deps.log({ event: 'lost-disconnect', connectionId: id })
        await deps.table.removeById(id)
        return null
      }
      // Expiry is the decision's to check (core/access.ts), as with every store.
      return item.record
    },
  }
}

/**
 * The rules named by WSDS_POLICY_FILE on AWS: a path bundled with the function (npm run
 * bundle:aws copies the file as JSON, infra/bundle.ts) or `ssm:<parameter name>`, read with
 * the keys' SSM access. SSM text is JSON, or YAML when the `yaml` package is bundled.
 */
export async function loadPolicy(source: string, ssm: (() => SSMClient) | undefined): Promise<Policy> {
  if (!source.startsWith('ssm:')) return readPolicyFile(source)
  if (ssm === undefined) throw new WsdsError('ERR_CONFIG', `WSDS_POLICY_FILE: ${source} needs an SSM client`)
  const out = await ssm().send(new GetParameterCommand({ Name: source.slice(4), WithDecryption: true }))
  const text = out.Parameter?.Value
  if (text === undefined) throw new WsdsError('ERR_POLICY', `WSDS_POLICY_FILE: ${source} has no value`)
  // An SSM parameter has no file name to tell JSON from YAML: JSON is an object's text.
  if (!text.trimStart().startsWith('{')) return parsePolicyText(text, source)
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (cause) {
    throw new WsdsError('ERR_POLICY', `${source}: not JSON: ${(cause as Error).message}`, { cause })
  }
  try {
    return compilePolicy(data)
  } catch (err) {
    if (isWsdsError(err, 'ERR_POLICY')) throw new WsdsError('ERR_POLICY', `${source}: ${err.message}`, { cause: err })
    throw err
  }
}

/**
 * `policy`: rules to apply (default: WSDS_POLICY_FILE, loaded on the first request and kept
 * for the container's life; a failed load answers that request 503 and is retried on the
 * next, so a bad file never means requests pass without the rules).
 */
export function createAuthorizer(
  deps: Pick<AwsDeps, 'store' | 'table' | 'connections' | 'config' | 'now' | 'log' | 'ssm'> & { policy?: PolicySource },
): (event: AuthorizerEvent) => Promise<AuthorizerResult> {
  const authenticator = createAuthenticator({ store: liveStore(deps), cacheTtlMs: 0, now: deps.now })
  const build = (policy: PolicySource | undefined) =>
    ({ policy, front: createFront({ authenticator, mode: deps.config.mode, requestMac: nodeRequestMac, ...(policy !== undefined ? { policy, sha256: nodeSha256 } : {}) }) })
  const source = deps.config.policyFile ?? null
  let ready: Promise<ReturnType<typeof build>> | null =
    deps.policy !== undefined || source === null ? Promise.resolve(build(deps.policy)) : null
  const load = () =>
    (ready ??= loadPolicy(source!, deps.ssm).then(
      (current) => build({ current }),
      (err: unknown) => {
        ready = null
        deps.log({ event: 'policy-failed', source, error: (err as Error).message })
        throw err
      },
    ))
  return async (event) => {
    const { policy, front } = await load()
    const connectionId = header(event.headers, 'connectionId')
    // A bound connection's request is admitted only with its WSDS-Signature over method and
    // target (PROTOCOL.md, "Request binding"), so the signature must be an identity source too.
    const signature = header(event.headers, SIGNATURE_HEADER)
    const decision = await front.decide({
      connectionId,
      method: event.httpMethod,
      target: targetOf(event),
      ...(signature === undefined ? {} : { signature }),
      remoteAddress: event.requestContext?.identity?.sourceIp,
      serviceToken: serviceTokenFrom(header(event.headers, 'X-WSDS-Service-Token'), header(event.headers, 'Authorization')),
    })
    if (decision.status === 503 && !decision.pass) throw new Error('store-unavailable')
    // A deny rule: an explicit Deny, which API Gateway answers 403 (ACCESS_DENIED gateway response).
    if (decision.status === 403 && !decision.pass) {
      return {
        principalId: 'policy',
        policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: 'Deny', Resource: event.methodArn }] },
        context: { verdict: decision.verdict, connectionId: '', origin: '' },
      }
    }
    if (!decision.pass) throw new Error(UNAUTHORIZED)
    // Rules and signatures depend on the method and path, so then one cached Allow must not
    // cover the whole stage.
    const resource = policy?.current.active || signature !== undefined ? event.methodArn : stageWildcard(event.methodArn)
    return {
      principalId: decision.record?.connectionId ?? (decision.verdict === 'allow:policy' ? 'policy' : 'monitor'),
      policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: resource }] },
      // Handed to the integration ($context.authorizer.*): the forward-auth headers.
      context: {
        verdict: decision.headers[VERDICT_HEADER] ?? decision.verdict,
        connectionId: decision.headers[CONNECTION_ID_RESPONSE_HEADER] ?? '',
        origin: decision.headers[ORIGIN_RESPONSE_HEADER] ?? '',
        // With rules in force always ('' when none decided), so a response mapping of
        // $context.authorizer.rule (X-WSDS-Rule, infra/stack.ts) has a value to map; without
        // rules only when one decided, so plain admissions look as before.
        ...(decision.headers[RULE_HEADER] !== undefined ? { rule: decision.headers[RULE_HEADER] } : policy?.current.active ? { rule: '' } : {}),
      },
    }
  }
}

const MAX_WHO = 100

/**
 * The protected demo service, and the REST API's CORS preflights (the stack routes OPTIONS
 * here without the authorizer). `GET /greeting?who=X` -> `{"greeting":"Hello, X!"}`, as
 * src/demo/greeting.ts serves it self-hosted.
 */
export function createGreeting(corsOrigins: readonly string[]): (event: ProxyEvent) => Promise<ProxyResult> {
  const cors = createCorsPolicy(corsOrigins)
  return async (event) => {
    const answer = cors.decide({
      method: event.httpMethod,
      origin: header(event.headers, 'origin'),
      requestMethod: header(event.headers, 'access-control-request-method'),
      requestHeaders: header(event.headers, 'access-control-request-headers'),
    })
    if (answer.kind === 'preflight') return { statusCode: answer.status, headers: { ...answer.headers, 'cache-control': 'no-store' }, body: '' }
    const extra = answer.kind === 'headers' ? answer.headers : {}
    const json = (statusCode: number, body: unknown): ProxyResult => ({ statusCode, headers: { 'content-type': 'application/json', ...extra }, body: JSON.stringify(body) })
    if (event.httpMethod !== 'GET' && event.httpMethod !== 'HEAD') return json(405, { error: 'method-not-allowed' })
    const who = (event.queryStringParameters?.who ?? '').slice(0, MAX_WHO) || 'World'
    return json(200, { greeting: `Hello, ${who}!` })
  }
}

/** The greeting with no cross-origin pages allowed. */
export const greeting = createGreeting([])
