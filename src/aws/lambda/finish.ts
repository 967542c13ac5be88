/** Lambda entry: the state machine's outcome tasks (MarkVerified, Rejected, TimedOut). */
import { depsFromEnv } from '../deps.ts'
import { createTaskHandlers, type FinishInput } from '../tasks.ts'

const tasks = createTaskHandlers(depsFromEnv(process.env, { connections: true }))
export const handler = (input: FinishInput) => tasks.finish(input)
