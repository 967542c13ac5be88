/**
 * Posting to and closing sockets through API Gateway's `@connections` API. A connection that
 * is already gone (410 GoneException) is not an error here: the client left, and its
 * `$disconnect` cleans up.
 */
import {
  ApiGatewayManagementApiClient,
  DeleteConnectionCommand,
  GetConnectionCommand,
  GoneException,
  PostToConnectionCommand,
} from '@aws-sdk/client-apigatewaymanagementapi'
import { encodeServerMessage, type ServerMessage } from '../core/protocol.ts'

/**
 * Header carrying the PROTOCOL.md close code on DELETE. API Gateway ignores it (it closes
 * with its own code: close codes are best effort on AWS); the local emulation honours it.
 */
export const CLOSE_CODE_HEADER = 'x-wsds-close-code'

const isGone = (err: unknown) => err instanceof GoneException || (err as Error | null)?.name === 'GoneException'

export interface Connections {
  /** Sends one frame; false when the connection is gone. */
  post(connectionId: string, message: ServerMessage): Promise<boolean>
  /** Closes the socket; `code` reaches the client where the platform allows. */
  close(connectionId: string, code: number): Promise<void>
  /** GetConnection: false when API Gateway no longer has the socket (410), even if $disconnect was lost. */
  alive(connectionId: string): Promise<boolean>
}

export function createConnections(client: ApiGatewayManagementApiClient): Connections {
  return {
    async post(connectionId, message) {
      try {
        await client.send(new PostToConnectionCommand({ ConnectionId: connectionId, Data: encodeServerMessage(message) }))
        return true
      } catch (err) {
        if (isGone(err)) return false
        throw err
      }
    },
    async alive(connectionId) {
      try {
        await client.send(new GetConnectionCommand({ ConnectionId: connectionId }))
        return true
      } catch (err) {
        if (isGone(err)) return false
        throw err
      }
    },
    async close(connectionId, code) {
      const command = new DeleteConnectionCommand({ ConnectionId: connectionId })
      command.middlewareStack.add(
        (next) => async (args) => {
          const request = args.request as { headers?: Record<string, string> }
          if (request.headers) request.headers[CLOSE_CODE_HEADER] = String(code)
          return next(args)
        },
        { step: 'build', name: 'wsdsCloseCode' },
      )
      try {
        await client.send(command)
      } catch (err) {
        if (!isGone(err)) throw err
      }
    },
  }
}
