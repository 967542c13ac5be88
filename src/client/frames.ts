/**
 * Message dispatch: one server frame in, at most one handler called. The checks are those of
 * parseServerMessage (src/core/protocol.ts) for the frames the SDK acts on, inline: that
 * parser builds every server message, twice the bytes. Anything else (unknown types, `error`,
 * `pong`, malformed frames) is ignored, as PROTOCOL.md asks of clients.
 */
import type { ChallengeMessage, RejectReason } from '../core/protocol.ts'

export interface FrameHandlers {
  /** `connection`: the gateway assigned an id. */
  connection(id: string): void
  /** A well-formed `challenge`; a malformed `pow` has been dropped. */
  challenge(challenge: ChallengeMessage): void
  /** `verified`, with the gateway's binding key when the connection is bound. */
  verified(id: string, serverKey: string | undefined): void
  rejected(reason: RejectReason): void
}

const isString = (v: unknown): v is string => typeof v === 'string'

export function dispatchFrame(data: unknown, on: FrameHandlers): void {
  if (!isString(data)) return
  let m: any
  try {
    m = JSON.parse(data)
  } catch {
    return
  }
  const id = m?.connectionId
  switch (m?.type) {
    case 'connection':
      if (isString(id)) on.connection(id)
      break
    case 'challenge':
      if (!isString(m.token) || typeof m.expiresInMs !== 'number') break
      if (m.form === 'program' ? !('program' in m) : (m.form !== undefined && m.form !== 'code') || !isString(m.code)) break
      // A malformed `pow` is dropped, as parseServerMessage does.
      if (!(m.pow?.alg === 'sha256' && Number.isInteger(m.pow.bits))) m.pow = undefined
      on.challenge(m)
      break
    case 'verified': {
      if (!isString(id)) break
      const serverKey = m.bind?.key
      on.verified(id, isString(serverKey) ? serverKey : undefined)
      break
    }
    case 'rejected':
      if (isString(m.reason)) on.rejected(m.reason)
      break
  }
}
