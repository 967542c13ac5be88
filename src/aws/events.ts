/**
 * The few fields of API Gateway's and Step Functions' event shapes that the handlers read
 * (AWS docs: "WebSocket API ... event format", "Lambda REQUEST authorizer input"). Declared
 * here rather than pulled from @types/aws-lambda: the handlers depend on these fields only.
 */

export interface WebSocketRequestContext {
  connectionId: string
  routeKey: string
  eventType: 'CONNECT' | 'MESSAGE' | 'DISCONNECT'
  domainName?: string
  stage?: string
  requestId?: string
  connectedAt?: number
  identity?: { sourceIp?: string; userAgent?: string }
  /** $disconnect only: the close code and reason the socket ended with. */
  disconnectStatusCode?: number
  disconnectReason?: string
}

export interface WebSocketEvent {
  requestContext: WebSocketRequestContext
  /** $connect only. */
  headers?: Record<string, string | undefined> | null
  multiValueHeaders?: Record<string, string[] | undefined> | null
  queryStringParameters?: Record<string, string | undefined> | null
  body?: string | null
  isBase64Encoded?: boolean
}

/** What a WebSocket route returns; on $connect a non-2xx status refuses the upgrade. */
export interface WebSocketResult {
  statusCode: number
  body?: string
}

/** REQUEST authorizer input (REST API). */
export interface AuthorizerEvent {
  type: 'REQUEST'
  methodArn: string
  resource?: string
  path?: string
  httpMethod?: string
  headers?: Record<string, string | undefined> | null
  queryStringParameters?: Record<string, string | undefined> | null
  multiValueQueryStringParameters?: Record<string, string[] | undefined> | null
  /** `path`: the path as the client sent it (stage or base path included), what a request signature covers. */
  requestContext?: { path?: string; identity?: { sourceIp?: string } }
}

export interface AuthorizerResult {
  principalId: string
  policyDocument: {
    Version: '2012-10-17'
    Statement: { Action: 'execute-api:Invoke'; Effect: 'Allow' | 'Deny'; Resource: string }[]
  }
  /** Passed to the integration as `$context.authorizer.<key>`: strings, numbers, booleans only. */
  context?: Record<string, string>
}

/** Lambda proxy integration input (REST API), for the protected greeting. */
export interface ProxyEvent {
  httpMethod: string
  path: string
  queryStringParameters?: Record<string, string | undefined> | null
  headers?: Record<string, string | undefined> | null
  requestContext?: { authorizer?: Record<string, string | undefined> | null }
}

export interface ProxyResult {
  statusCode: number
  headers?: Record<string, string>
  body: string
}

/** Header lookup as HTTP means it: case-insensitive (API Gateway passes names as sent). */
export function header(headers: Record<string, string | undefined> | null | undefined, name: string): string | undefined {
  if (!headers) return undefined
  const wanted = name.toLowerCase()
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === wanted) return value
  return undefined
}
