/**
 * Step Functions task code: the two Lambda tasks of the handshake state machine
 * (infra/stack.ts). `issueChallenge` runs under `.waitForTaskToken`: it sends the challenge
 * and returns, and the execution then waits until the answer handler reports with the task
 * token, or the wait's timeout fires. `finish` carries out the outcome.
 */
import { createChallenge } from '../core/challenge.ts'
import { newId } from '../core/lifecycle.ts'
import { closeCodeFor, type RejectReason } from '../core/protocol.ts'
import type { AwsDeps } from './deps.ts'

export interface IssueChallengeInput {
  connectionId: string
  keySetId: string
  hostname: string
  timeoutMs: number
  taskToken: string
}

export interface FinishInput {
  connectionId: string
  /** 'verified', a rejection reason, or the name of any other error that ended the wait. */
  outcome: string
}

/** Outcomes that end with a `rejected` frame; anything else closes without one. */
const REJECTIONS: ReadonlySet<string> = new Set<RejectReason>(['wrong-answer', 'bad-domain', 'timeout'])

export class ConnectionGoneError extends Error {
  override name = 'ConnectionGone'
}

export interface TaskHandlers {
  issueChallenge(input: IssueChallengeInput): Promise<{ expiresInMs: number }>
  finish(input: FinishInput): Promise<{ outcome: string; delivered: boolean }>
}

export function createTaskHandlers(deps: AwsDeps): TaskHandlers {
  const { connections, table, now, log } = deps
  return {
    async issueChallenge(input) {
      const { connectionId: id } = input
      const keySet = (await deps.keyRing()).resolve(input.keySetId)
      // hello resolved this id moments ago; a key rotation in between makes it stale.
      if (keySet === null) throw new Error(`key set ${input.keySetId} is no longer loaded`)
      const challenge = createChallenge({ keySet, hostname: input.hostname, random: deps.random })
      const token = newId(deps.random)
      const deadlineAt = now() + input.timeoutMs
      // Stored before it is sent: an answer can arrive as soon as the frame leaves.
      const stored = await table.storeChallenge(id, { token, expected: challenge.expected, taskToken: input.taskToken, deadlineAt })
      // Throwing fails the task at once (the state machine's catch-all) instead of waiting out the timeout.
      if (!stored) throw new ConnectionGoneError(id)
      const expiresInMs = Math.max(0, deadlineAt - now())
      if (!(await connections.post(id, { type: 'challenge', token, code: challenge.code, expiresInMs }))) throw new ConnectionGoneError(id)
      return { expiresInMs }
    },

    async finish(input) {
      const { connectionId: id, outcome } = input
      if (outcome === 'verified') {
        // Conditional: a socket that closed meanwhile stays deleted and hears nothing.
        const marked = await table.markVerified(id, now())
        const delivered = marked && (await connections.post(id, { type: 'verified', connectionId: id }))
        log({ event: 'outcome', connectionId: id, outcome, delivered })
        return { outcome, delivered }
      }
      if (outcome === 'disconnected' || outcome === 'ConnectionGone') return { outcome, delivered: false }
      if (REJECTIONS.has(outcome)) {
        const reason = outcome as RejectReason
        const delivered = await connections.post(id, { type: 'rejected', reason })
        await connections.close(id, closeCodeFor(reason))
        log({ event: 'outcome', connectionId: id, outcome, delivered })
        return { outcome, delivered }
      }
      // A failure of our own (a Lambda error, an unexpected output): no wire reason fits, so
      // the socket closes without a verdict and the client starts over (1011: server error).
      await connections.close(id, 1011)
      log({ event: 'outcome', connectionId: id, outcome: 'internal-error', error: outcome })
      return { outcome, delivered: false }
    },
  }
}
