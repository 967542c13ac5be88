/**
 * Runs the core lifecycle (src/core/lifecycle.ts `transition()`) on AWS, with the record's
 * `state` attribute as the persisted ConnectionState (src/aws/table.ts). The same rules as the
 * self-hosted gateway, carried out with AWS's parts:
 *
 * - `send` / `close`: `@connections` POST / DELETE on API Gateway's id.
 * - `persist-verified`: in the same conditional write as the new state.
 * - `timer`: the deadline timer is a Step Functions wait (infra/stack.ts, state `Wait`):
 *   arming starts an execution, clearing ends the armed wait with SendTaskSuccess, and a wait
 *   that times out delivers the `deadline` event (src/aws/tasks.ts).
 *
 * - re-challenges (WSDS_RECHALLENGE_MS): no Step Functions wait. The record's `sweepAt` says
 *   when the sweeper (src/aws/sweeper.ts) must look again: the next re-challenge once
 *   verified, the re-challenge's deadline while one is outstanding (docs/step-up.md, "On AWS").
 *
 * No timer runs between Lambda invocations, so a message that arrives after the deadline is
 * first given the `deadline` event the timer would have delivered (a late answer is `timeout`).
 * Everything feature-specific (forms, binding, proof of work) reaches AWS through
 * LifecycleContext and the JSON-safe ConnectionState, with no AWS-specific code.
 */
import { SendTaskSuccessCommand, StartExecutionCommand } from '@aws-sdk/client-sfn'
import { WsdsError } from '../core/errors.ts'
import { transition, type Action, type ConnectionState, type LifecycleContext, type LifecycleEvent, type Transition } from '../core/lifecycle.ts'
import { closeCodeFor } from '../core/protocol.ts'
import { createNodeBinder } from '../crypto/node-binding.ts'
import { createEngineChecks } from '../engine/parse5.ts'
import { nodeSha256 } from '../crypto/node-sha256.ts'
import type { AwsDeps } from './deps.ts'
import type { SessionItem } from './table.ts'

/** Jitter of periodic re-challenges, as the self-hosted timer's (src/gateway/rechallenge-timer.ts). */
export const RECHALLENGE_JITTER = 0.1

/** A verified connection with a challenge outstanding: a re-challenge, whose deadline the sweeper keeps. */
export const isRechallenge = (state: ConnectionState): boolean => state.phase === 'verified' && state.outstanding !== null

/** Input of one execution of the deadline state machine. */
export interface TimerInput {
  connectionId: string
  /** Epoch ms of the deadline this wait is for. */
  at: number
}

/** Errors of SendTask* meaning the wait is over already (timed out, or its execution ended). */
export const TASK_OVER = new Set(['TaskTimedOut', 'TaskDoesNotExist', 'InvalidToken'])

/** Conditional writes lost to a concurrent message before giving up (each retry re-reads). */
const MAX_ATTEMPTS = 3

/**
 * Execution names allow `[A-Za-z0-9-_]` only (at most 80). Our ids are base64url (22
 * characters); the deadline keeps names unique when a connection is challenged again.
 */
export function executionName(connectionId: string, at: number): string {
  return `${connectionId.replace(/[^A-Za-z0-9_-]/g, '').slice(0, 60)}-${at}`
}

export interface SessionDriver {
  /** Runs one event on connection `id`; `fired`: the armed wait for this deadline timed out. */
  run(id: string, event: LifecycleEvent, options?: { fired?: number }): Promise<Transition | null>
}

export function createSessionDriver(deps: AwsDeps): SessionDriver {
  const { connections, table, sfn, log, config } = deps

  // Everything feature-specific comes in here, as on the self-hosted gateway: the forms
  // allowed, engine checks, request binding and the hash that checks proof of work.
  const binder = createNodeBinder()
  const engine = createEngineChecks(config.engineChecks)
  const context = async (now: number): Promise<LifecycleContext> => ({
    now,
    keyRing: await deps.keyRing(),
    random: deps.random,
    timeoutMs: config.challengeTimeoutMs,
    forms: config.challengeForms,
    ...(engine !== undefined ? { engine } : {}),
    binding: config.binding,
    binder,
    sha256: nodeSha256,
    powBits: config.powBits ?? 0,
  })

  /**
   * Where the sweeper must look next, from what the transition did; undefined = unchanged.
   * The next re-challenge is one interval after a verification less up to 10% jitter
   * (PROTOCOL.md, "Re-challenge and proof of work"), drawn as the self-hosted timer draws it.
   */
  const sweepAfter = (before: SessionItem, next: Transition, now: number): number | null | undefined => {
    if (next.state.phase === 'closed') return before.sweepAt === null ? undefined : null
    // A frame during the re-challenge (a ping) leaves its deadline, and the index, as they are.
    if (isRechallenge(next.state)) return next.state.deadlineAt === before.sweepAt ? undefined : next.state.deadlineAt
    if (!next.actions.some((a) => a.type === 'persist-verified')) return undefined
    const interval = config.rechallengeMs ?? null
    // Periodic re-challenges off: an answered operator re-challenge leaves the index.
    if (interval === null) return before.sweepAt === null ? undefined : null
    return Math.round(now + interval - interval * RECHALLENGE_JITTER * Math.random())
  }

  const disarm = async (taskToken: string | null) => {
    if (taskToken === null) return
    try {
      await sfn.send(new SendTaskSuccessCommand({ taskToken, output: '{"disarmed":true}' }))
    } catch (err) {
      if (!TASK_OVER.has((err as Error).name)) throw err
    }
  }

  const arm = async (item: SessionItem, at: number) => {
    const input: TimerInput = { connectionId: item.record.connectionId, at }
    await sfn.send(new StartExecutionCommand({ stateMachineArn: config.stateMachineArn, name: executionName(item.record.connectionId, at), input: JSON.stringify(input) }))
  }

  /** Carries out the actions in order; timer changes last, as they are not on the wire path. */
  const perform = async (item: SessionItem, actions: readonly Action[], timer: number | null | undefined, firedAt: number | undefined, armedToken: string | null) => {
    for (const action of actions) {
      if (action.type === 'send') await connections.post(item.gatewayId, action.message)
      else if (action.type === 'close') await connections.close(item.gatewayId, action.code)
    }
    if (timer === undefined || timer === item.timerAt) return
    // The wait that just fired has ended by itself; any other armed wait is ended here.
    if (item.timerAt !== firedAt) await disarm(armedToken)
    if (timer === null) return
    try {
      await arm(item, timer)
    } catch (err) {
      // No deadline can be enforced, so no handshake may go on: `timeout` is the reason the
      // SDK retries with backoff (docs/protocol.md, "AWS: a handshake the gateway cannot time").
      log({ event: 'timer-failed', connectionId: item.record.connectionId, error: (err as Error).name })
      await connections.post(item.gatewayId, { type: 'rejected', reason: 'timeout' })
      await connections.close(item.gatewayId, closeCodeFor('timeout'))
    }
  }

  const step = (state: ConnectionState, event: LifecycleEvent, ctx: LifecycleContext): Transition => {
    // The timer that would have fired by now (none runs between invocations).
    if (event.type !== 'deadline' && state.deadlineAt !== null && ctx.now >= state.deadlineAt) {
      const late = transition(state, { type: 'deadline' }, ctx)
      if (late.state.phase === 'closed') return late
    }
    return transition(state, event, ctx)
  }

  return {
    async run(id, event, options = {}) {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const item = await deps.table.load(id)
        if (item === null) return null
        // A wait that timed out is the timer firing: its deadline has come, whatever this clock says.
        const now = options.fired === undefined ? deps.now() : Math.max(deps.now(), options.fired)
        const next = step(item.state, event, await context(now))
        let timer: number | null | undefined
        for (const a of next.actions) if (a.type === 'timer') timer = a.at
        if (next.state === item.state && next.actions.length === 0) return next
        // A re-challenge's deadline is the sweeper's (sweepAt), not a Step Functions wait.
        if (timer !== undefined && timer !== null && isRechallenge(next.state)) timer = undefined
        const sweepAt = sweepAfter(item, next, now)
        const persist = next.actions.find((a) => a.type === 'persist-verified')
        const verified = persist === undefined ? {} : { verifiedAt: now, ...(persist.bindKey !== undefined ? { bindKey: persist.bindKey } : {}) }
        const change = {
          state: next.state,
          ...verified,
          ...(timer === undefined || timer === item.timerAt ? {} : { timerAt: timer }),
          ...(sweepAt === undefined ? {} : { sweepAt }),
        }
        // Committed before anything is sent: a lost race sends nothing twice.
        const saved = await table.save(id, item.rev, change)
        if (saved === null) continue
        // The token as the write found it: a wait armed after our read is still ended.
        await perform(item, next.actions, timer, options.fired, saved.taskToken ?? item.taskToken)
        if (next.outcome !== undefined) log({ event: 'outcome', connectionId: id, outcome: next.outcome })
        return next
      }
      throw new WsdsError('ERR_STORE_UNAVAILABLE', `connection ${id}: ${MAX_ATTEMPTS} concurrent writes in a row`)
    },
  }
}
