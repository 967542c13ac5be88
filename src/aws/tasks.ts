/**
 * The deadline state machine's task code (infra/stack.ts): one Lambda, two operations.
 * `arm` runs under `.waitForTaskToken`: it stores the wait's token on the record so that a
 * verdict can end the wait (SendTaskSuccess), then the execution waits, at no cost, until
 * then or until the wait's TimeoutSeconds. `fire` runs after a timeout and delivers the
 * lifecycle's `deadline` event (src/aws/session.ts).
 */
import type { AwsDeps } from './deps.ts'
import { createSessionDriver, type TimerInput } from './session.ts'

export type TimerTaskInput = (TimerInput & { op: 'arm'; taskToken: string }) | (TimerInput & { op: 'fire' })

/** Thrown by `arm` when the deadline was cleared or moved first; the machine catches it by name. */
export class DisarmedError extends Error {
  override name = 'Disarmed'
}

export interface TaskHandlers {
  timer(input: TimerTaskInput): Promise<{ outcome: string }>
}

export function createTaskHandlers(deps: AwsDeps): TaskHandlers {
  const driver = createSessionDriver(deps)
  return {
    async timer(input) {
      const { connectionId: id, at } = input
      if (input.op === 'arm') {
        // Conditional on the deadline still being this one: a verdict that came first wins.
        if (!(await deps.table.storeTaskToken(id, at, input.taskToken))) throw new DisarmedError(id)
        return { outcome: 'armed' }
      }
      const item = await deps.table.load(id)
      if (item === null || item.timerAt !== at) return { outcome: 'stale' }
      const next = await driver.run(id, { type: 'deadline' }, { fired: at })
      return { outcome: next?.outcome ?? 'none' }
    },
  }
}
