/**
 * Re-challenges on AWS (PROTOCOL.md, "Re-challenge and proof of work"; docs/step-up.md,
 * "On AWS"). One Lambda, run every minute by an EventBridge rule (infra/stack.ts), does what
 * the self-hosted gateway's re-challenge timer does (src/gateway/rechallenge-timer.ts):
 *
 * - it queries the table's sparse sweep index for connections whose `sweepAt` has come
 *   (src/aws/table.ts): a verified connection due for its next re-challenge, or one whose
 *   re-challenge deadline has passed;
 * - due: the lifecycle's `rechallenge` event (src/aws/session.ts runs `transition()`), so the
 *   challenge goes out through `@connections` POST and its answer arrives on `$default` like
 *   the first one's;
 * - deadline passed: the lifecycle's `deadline` event (`rejected` `timeout`, DeleteConnection,
 *   the 4408 of the self-hosted gateway), then the record is deleted, so the id gets 401 even
 *   when API Gateway's `$disconnect` is lost.
 *
 * EventBridge fires at most once a minute. For WSDS_RECHALLENGE_MS under 10 minutes the
 * invocation sweeps again within its minute, every `sweepPeriodMs` (a tenth of the interval,
 * at least 1 s), so re-challenges stay within the 10% jitter PROTOCOL.md allows and a missed
 * deadline closes the socket within one period. Admission does not wait for the sweeper: the
 * authorizer refuses a connection whose re-challenge deadline has passed (src/aws/rest.ts).
 *
 * Also the operator's re-challenge (`{"op":"rechallenge",...}`, invoked through the Lambda
 * API, so IAM is the authentication): one id, every verified connection of one origin, or all.
 */
import { ScanCommand, type AttributeValue, type DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { WsdsError } from '../core/errors.ts'
import type { AwsDeps } from './deps.ts'
import { createSessionDriver, isRechallenge } from './session.ts'
import { SWEEP_SHARDS } from './table.ts'

/** Connections handled per pass at most: a pass must end well inside the function's timeout. */
export const MAX_DUE_PER_PASS = 5000
/** Connections handled at once: each is a few DynamoDB and `@connections` calls. */
const CONCURRENCY = 16
/** EventBridge's schedule: one invocation a minute, which sweeps until this much has passed. */
export const SWEEP_BUDGET_MS = 55_000

export interface SweepResult {
  due: number
  rechallenged: number
  /** Connections closed at their re-challenge deadline (record deleted). */
  closed: number
  /** Index entries that were stale on re-reading (moved, or the record gone). */
  skipped: number
}

export interface OperatorRechallenge {
  op: 'rechallenge'
  /** One of: an id, an origin, or `all: true`. */
  connectionId?: string
  origin?: string
  all?: boolean
  /** Proof of work for this one challenge, above WSDS_POW_BITS (1..32). */
  powBits?: number
}

export interface Sweeper {
  /** One pass over the connections due now. */
  sweep(): Promise<SweepResult>
  /**
   * Passes every `sweepPeriodMs` until `budgetMs` has passed (one pass when the period is a
   * minute or more, and when re-challenges are off).
   */
  run(budgetMs?: number): Promise<SweepResult & { passes: number }>
  rechallenge(request: OperatorRechallenge): Promise<{ rechallenged: number }>
}

/** How often the sweeper looks within its minute: a tenth of the interval, 1 s to 60 s. */
export function sweepPeriodMs(rechallengeMs: number): number {
  return Math.min(60_000, Math.max(1000, Math.floor(rechallengeMs / 10)))
}

async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** `dynamo`: the table's client, for the operator's Scan (the sweep itself uses `deps.table`). */
export function createSweeper(deps: AwsDeps, options: { dynamo?: DynamoDBClient; sleep?: (ms: number) => Promise<void> } = {}): Sweeper {
  const { table, config, log, now } = deps
  const driver = createSessionDriver(deps)
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)))

  const sweep = async (): Promise<SweepResult> => {
    const t = now()
    const ids = await table.due(t, MAX_DUE_PER_PASS)
    const result: SweepResult = { due: ids.length, rechallenged: 0, closed: 0, skipped: 0 }
    // A shard's share full: more may be due, and the next pass takes them.
    if (ids.length >= MAX_DUE_PER_PASS / SWEEP_SHARDS) log({ event: 'sweep-large', due: ids.length })
    await pool(ids, CONCURRENCY, async (id) => {
      try {
        // The index is eventually consistent: the record, read strongly, decides.
        const item = await table.load(id)
        if (item === null || item.sweepAt === null || item.sweepAt > now()) return void result.skipped++
        if (isRechallenge(item.state)) {
          const next = await driver.run(id, { type: 'deadline' })
          if (next?.state.phase !== 'closed') return void result.skipped++
          // Deleted here too: API Gateway's $disconnect is best effort.
          await table.removeById(id)
          result.closed++
          return
        }
        if (item.state.phase === 'verified') {
          const next = await driver.run(id, { type: 'rechallenge' })
          if (next !== null && isRechallenge(next.state)) result.rechallenged++
          else result.skipped++
          return
        }
        // Closed but still here (a lost $disconnect): nothing will answer it.
        await table.removeById(id)
        result.skipped++
      } catch (err) {
        // One connection's failure (a lost race three times, a throttled call) must not stop
        // the pass: its index entry stays, so the next pass retries it.
        log({ event: 'sweep-failed', connectionId: id, error: (err as Error).name })
      }
    })
    return result
  }

  const scanVerified = async (origin: string | undefined): Promise<string[]> => {
    if (options.dynamo === undefined) throw new WsdsError('ERR_CONFIG', 'an operator re-challenge of an origin or of all needs the DynamoDB client')
    const ids: string[] = []
    let start: Record<string, AttributeValue> | undefined
    do {
      const out = await options.dynamo.send(
        new ScanCommand({
          TableName: config.tableName,
          ProjectionExpression: 'connectionId',
          FilterExpression: origin === undefined ? '#s = :v' : '#s = :v AND origin = :o',
          ExpressionAttributeNames: { '#s': 'status' },
          ExpressionAttributeValues: { ':v': { S: 'verified' }, ...(origin === undefined ? {} : { ':o': { S: origin } }) },
          ...(start === undefined ? {} : { ExclusiveStartKey: start }),
        }),
      )
      for (const item of out.Items ?? []) if (item.connectionId?.S !== undefined) ids.push(item.connectionId.S)
      start = out.LastEvaluatedKey
    } while (start !== undefined)
    return ids
  }

  return {
    sweep,
    async run(budgetMs = SWEEP_BUDGET_MS) {
      const total = { due: 0, rechallenged: 0, closed: 0, skipped: 0, passes: 0 }
      // Off: one pass a minute still, for the deadlines of operator re-challenges.
      const interval = config.rechallengeMs ?? null
      const period = interval === null ? 60_000 : sweepPeriodMs(interval)
      const started = now()
      for (;;) {
        const passStarted = now()
        const r = await sweep()
        total.passes++
        total.due += r.due
        total.rechallenged += r.rechallenged
        total.closed += r.closed
        total.skipped += r.skipped
        const wait = passStarted + period - now()
        if (now() + Math.max(0, wait) - started >= budgetMs) break
        if (wait > 0) await sleep(wait)
      }
      if (total.due > 0) log({ event: 'sweep', ...total })
      return total
    },

    async rechallenge(request) {
      const powBits = request.powBits
      if (powBits !== undefined && (!Number.isInteger(powBits) || powBits < 1 || powBits > 32)) {
        throw new WsdsError('ERR_CONFIG', `rechallenge: powBits must be an integer in [1, 32], got ${JSON.stringify(powBits)}`)
      }
      const chosen = [request.connectionId !== undefined, request.origin !== undefined, request.all === true].filter(Boolean).length
      if (chosen !== 1) throw new WsdsError('ERR_CONFIG', 'rechallenge: give exactly one of connectionId, origin or all: true')
      const ids = request.connectionId !== undefined ? [request.connectionId] : await scanVerified(request.origin)
      let rechallenged = 0
      await pool(ids, CONCURRENCY, async (id) => {
        const next = await driver.run(id, { type: 'rechallenge', ...(powBits !== undefined ? { powBits } : {}) })
        if (next !== null && isRechallenge(next.state) && next.actions.length > 0) rechallenged++
      })
      log({ event: 'rechallenge', via: 'operator', rechallenged, ...(request.origin !== undefined ? { origin: request.origin } : {}) })
      return { rechallenged }
    },
  }
}
