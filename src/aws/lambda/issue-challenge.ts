/** Lambda entry: the state machine's IssueChallenge task (runs under .waitForTaskToken). */
import { depsFromEnv } from '../deps.ts'
import { createTaskHandlers, type IssueChallengeInput } from '../tasks.ts'

const tasks = createTaskHandlers(depsFromEnv(process.env, { keys: true, connections: true }))
export const handler = (input: IssueChallengeInput) => tasks.issueChallenge(input)
