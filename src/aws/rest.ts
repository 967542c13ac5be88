/**
 * The REST side: the Lambda REQUEST authorizer and the protected demo greeting.
 *
 * The authorizer asks the same front as every self-hosted authenticator (core/front.ts),
 * with no cache of its own: API Gateway caches Allow results per `connectionId` header for
 * the authorizer TTL, which on AWS is the revocation bound (API Gateway cannot drop one
 * cached key). A refusal throws `Unauthorized`, which API Gateway answers 401 through the
 * UNAUTHORIZED gateway response (body `{"error":"unauthorized"}`, set in the stack); any
 * other throw is AUTHORIZER_FAILURE, mapped to 503 like the self-hosted store-unavailable.
 */
import { createAuthenticator } from '../core/authenticator.ts'
import { createFront, ORIGIN_RESPONSE_HEADER, CONNECTION_ID_RESPONSE_HEADER, RULE_HEADER, VERDICT_HEADER } from '../core/front.ts'
import { serviceTokenFrom, type PolicySource } from '../core/policy.ts'
import { nodeRequestMac } from '../crypto/node-binding.ts'
import { nodeSha256, readPolicyFile } from '../server/policy-file.ts'
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
 * `policy`: rules to apply (default: WSDS_POLICY_FILE, read once at cold start: a bad file
 * fails the init, so API Gateway answers 503 rather than skipping the rules).
 */
export function createAuthorizer(
  deps: Pick<AwsDeps, 'store' | 'config' | 'now'> & { policy?: PolicySource },
): (event: AuthorizerEvent) => Promise<AuthorizerResult> {
  const authenticator = createAuthenticator({ store: deps.store, cacheTtlMs: 0, now: deps.now })
  const policy = deps.policy ?? (deps.config.policyFile ? { current: readPolicyFile(deps.config.policyFile) } : undefined)
  const front = createFront({ authenticator, mode: deps.config.mode, requestMac: nodeRequestMac, ...(policy !== undefined ? { policy, sha256: nodeSha256 } : {}) })
  return async (event) => {
    const connectionId = header(event.headers, 'connectionId')
    // A bound connection's request is admitted only with its WSDS-Signature over method and
    // target (PROTOCOL.md, "Request binding"), so the signature must be an identity source too.
    const decision = await front.decide({
      connectionId,
      method: event.httpMethod,
      target: event.path,
      signature: header(event.headers, 'WSDS-Signature'),
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
    // Rules depend on the method and path, so with rules in force one cached Allow must not
    // cover the whole stage.
    const resource = policy?.current.active ? event.methodArn : stageWildcard(event.methodArn)
    return {
      principalId: decision.record?.connectionId ?? (decision.verdict === 'allow:policy' ? 'policy' : 'monitor'),
      policyDocument: { Version: '2012-10-17', Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: resource }] },
      // Handed to the integration ($context.authorizer.*): the forward-auth headers.
      context: {
        verdict: decision.headers[VERDICT_HEADER] ?? decision.verdict,
        connectionId: decision.headers[CONNECTION_ID_RESPONSE_HEADER] ?? '',
        origin: decision.headers[ORIGIN_RESPONSE_HEADER] ?? '',
        // Only when a rule decided ($context.authorizer.rule), so plain admissions look as before.
        ...(decision.headers[RULE_HEADER] !== undefined ? { rule: decision.headers[RULE_HEADER] } : {}),
      },
    }
  }
}

const MAX_WHO = 100

/** `GET /greeting?who=X` -> `{"greeting":"Hello, X!"}`, as src/demo/greeting.ts serves it self-hosted. */
export async function greeting(event: ProxyEvent): Promise<ProxyResult> {
  const json = (statusCode: number, body: unknown): ProxyResult => ({ statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (event.httpMethod !== 'GET' && event.httpMethod !== 'HEAD') return json(405, { error: 'method-not-allowed' })
  const who = (event.queryStringParameters?.who ?? '').slice(0, MAX_WHO) || 'World'
  return json(200, { greeting: `Hello, ${who}!` })
}
