/** Lambda entry: the REST API's REQUEST authorizer (identity source: the connectionId header). */
import { depsFromEnv } from '../deps.ts'
import type { AuthorizerEvent } from '../events.ts'
import { createAuthorizer } from '../rest.ts'

const authorize = createAuthorizer(depsFromEnv(process.env, { connections: true }))
export const handler = (event: AuthorizerEvent) => authorize(event)
