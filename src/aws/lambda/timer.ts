/** Lambda entry: the deadline state machine's task (arm under .waitForTaskToken, fire on timeout). */
import { depsFromEnv } from '../deps.ts'
import { createTaskHandlers, type TimerTaskInput } from '../tasks.ts'

const tasks = createTaskHandlers(depsFromEnv(process.env, { keys: true, stateMachine: true, connections: true }))
export const handler = (input: TimerTaskInput) => tasks.timer(input)
