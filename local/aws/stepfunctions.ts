/**
 * A local Step Functions endpoint: the handlers reach it through the real
 * `@aws-sdk/client-sfn` (JSON 1.0 protocol), and executions run the template's definition in
 * aws-local-stepfunctions. That interpreter has no `.waitForTaskToken` and no
 * `$$.Task.Token`, so: each execution gets a fresh token in its context object, Lambda
 * tasks are bound to local handlers by state name (its task override option), and a wait
 * task's promise is settled by SendTaskSuccess / SendTaskFailure here. Timeouts
 * (TimeoutSeconds / TimeoutSecondsPath) are the interpreter's own.
 *
 * It evaluates a Task's TimeoutSecondsPath against the input after Parameters (AWS uses the
 * state's input), which is why the stack sets TimeoutSeconds from a template parameter.
 *
 * Limits: one wait-for-token task per execution at a time (the token is per execution);
 * HeartbeatSeconds is ignored (SendTaskHeartbeat is accepted and does nothing).
 */
import './polyfill.ts'
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { StateMachine } from 'aws-local-stepfunctions'

export type LocalFunction = (payload: unknown) => Promise<unknown>

export interface LocalStepFunctionsOptions {
  stateMachineArn: string
  definition: Record<string, unknown>
  /** Local function ARN -> the handler it runs. */
  functions: Map<string, LocalFunction>
}

export interface ExecutionRecord {
  arn: string
  name: string
  input: unknown
  status: 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABORTED'
  /** State names in the order they were entered. */
  states: string[]
  output?: unknown
  error?: string
  done: Promise<void>
}

export interface LocalStepFunctions {
  endpoint: string
  executions: Map<string, ExecutionRecord>
  /** State transitions (states entered), what Standard workflows are billed on. */
  readonly transitions: number
  close(): Promise<void>
}

interface Waiter {
  executionArn: string
  state: 'idle' | 'waiting' | 'closed'
  resolve?: (output: unknown) => void
  reject?: (err: Error) => void
}

class SfnError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message)
  }
}

function namedError(name: string, message: string): Error {
  const err = new Error(message)
  err.name = name
  return err
}

const NAME_RE = /^[A-Za-z0-9_-]{1,80}$/

export async function startLocalStepFunctions(options: LocalStepFunctionsOptions): Promise<LocalStepFunctions> {
  const { definition, functions } = options
  const machine = new StateMachine(definition as never, { validationOptions: { checkArn: false } })
  const states = definition.States as Record<string, { Type: string; Resource?: string }>
  const executions = new Map<string, ExecutionRecord>()
  const waiters = new Map<string, Waiter>()
  const byExecution = new Map<string, string>()
  let transitions = 0

  const invoke = async (arn: string, payload: unknown): Promise<unknown> => {
    const fn = functions.get(arn)
    if (!fn) throw namedError('Lambda.ResourceNotFoundException', `no local function ${arn}`)
    // Lambda hands functions JSON, not live objects.
    return JSON.parse(JSON.stringify((await fn(JSON.parse(JSON.stringify(payload ?? null)))) ?? null))
  }

  const overridesFor = (token: string) => {
    const handlers: Record<string, (input: unknown) => Promise<unknown>> = {}
    for (const [name, state] of Object.entries(states)) {
      if (state.Type !== 'Task' || state.Resource === undefined) continue
      const resource = state.Resource
      if (resource.endsWith(':lambda:invoke.waitForTaskToken')) {
        handlers[name] = async (input) => {
          const { FunctionName, Payload } = input as { FunctionName: string; Payload: unknown }
          const waiter = waiters.get(token)!
          const answered = new Promise<unknown>((resolve, reject) => Object.assign(waiter, { state: 'waiting', resolve, reject }))
          answered.catch(() => {})
          await invoke(FunctionName, Payload)
          return answered
        }
      } else if (resource.endsWith(':lambda:invoke')) {
        handlers[name] = async (input) => {
          const { FunctionName, Payload } = input as { FunctionName: string; Payload: unknown }
          return { StatusCode: 200, ExecutedVersion: '$LATEST', Payload: await invoke(FunctionName, Payload) }
        }
      } else if (resource.startsWith('arn:aws:lambda:')) {
        // payloadResponseOnly: the function ARN is the resource and the output is its result.
        handlers[name] = (input) => invoke(resource, input)
      }
    }
    return handlers
  }

  const startExecution = (body: { stateMachineArn?: string; name?: string; input?: string }) => {
    if (body.stateMachineArn !== options.stateMachineArn) throw new SfnError('StateMachineDoesNotExist', `no state machine ${body.stateMachineArn}`)
    const name = body.name ?? randomBytes(16).toString('hex')
    if (!NAME_RE.test(name)) throw new SfnError('InvalidName', `invalid execution name ${name}`)
    const arn = `${options.stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}`
    if (executions.has(arn)) throw new SfnError('ExecutionAlreadyExists', `execution ${name} already exists`)
    let input: unknown
    try {
      input = JSON.parse(body.input ?? '{}')
    } catch {
      throw new SfnError('InvalidExecutionInput', 'input is not JSON')
    }
    // Real task tokens are long opaque strings; this one is per execution.
    const token = randomBytes(48).toString('base64url')
    waiters.set(token, { executionArn: arn, state: 'idle' })
    byExecution.set(arn, token)
    const run = machine.run(input as never, { overrides: { taskResourceLocalHandlers: overridesFor(token) as never }, context: { Task: { Token: token } } as never })
    const record: ExecutionRecord = { arn, name, input, status: 'RUNNING', states: [], done: Promise.resolve() }
    const closeWaiter = () => {
      const w = waiters.get(token)
      if (w) w.state = 'closed'
    }
    const logs = (async () => {
      for await (const event of run.eventLogs) {
        const e = event as { type: string; state?: { name: string } }
        if (e.type === 'StateEntered' && e.state) {
          transitions++
          record.states.push(e.state.name)
        }
        // A wait that failed (timed out, caught) can no longer be answered.
        if ((e.type === 'StateFailed' || e.type === 'StateCaught') && e.state && states[e.state.name]?.Resource?.endsWith('.waitForTaskToken')) closeWaiter()
      }
    })()
    record.done = run.result.then(
      async (output) => {
        record.status = 'SUCCEEDED'
        record.output = output
      },
      (err: Error) => {
        record.status = err.name === 'ExecutionTimeoutError' ? 'TIMED_OUT' : 'FAILED'
        record.error = err.message
      },
    ).finally(async () => {
      closeWaiter()
      await logs.catch(() => {})
    })
    executions.set(arn, record)
    return { executionArn: arn, startDate: Date.now() / 1000 }
  }

  const settle = (token: string | undefined, outcome: { output: unknown } | { error: Error }) => {
    const w = token === undefined ? undefined : waiters.get(token)
    if (!w) throw new SfnError('TaskDoesNotExist', 'task token does not exist')
    if (w.state === 'closed') throw new SfnError('TaskTimedOut', 'task timed out or its execution ended')
    if (w.state !== 'waiting') throw new SfnError('TaskDoesNotExist', 'no task is waiting on this token')
    w.state = 'idle'
    if ('output' in outcome) w.resolve!(outcome.output)
    else w.reject!(outcome.error)
    return {}
  }

  const operations: Record<string, (body: Record<string, unknown>) => unknown> = {
    StartExecution: (b) => startExecution(b as never),
    SendTaskSuccess: (b) => {
      let output: unknown
      try {
        output = JSON.parse(String(b.output))
      } catch {
        throw new SfnError('InvalidOutput', 'output is not JSON')
      }
      return settle(b.taskToken as string, { output })
    },
    SendTaskFailure: (b) => settle(b.taskToken as string, { error: namedError(String(b.error ?? ''), String(b.cause ?? '')) }),
    SendTaskHeartbeat: (b) => {
      const w = waiters.get(String(b.taskToken))
      if (!w) throw new SfnError('TaskDoesNotExist', 'task token does not exist')
      if (w.state === 'closed') throw new SfnError('TaskTimedOut', 'task timed out')
      return {}
    },
    DescribeExecution: (b) => {
      const e = executions.get(String(b.executionArn))
      if (!e) throw new SfnError('ExecutionDoesNotExist', 'no such execution')
      return { executionArn: e.arn, name: e.name, status: e.status, input: JSON.stringify(e.input), output: e.output === undefined ? undefined : JSON.stringify(e.output) }
    },
  }

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '')
      const op = operations[target.replace(/^AWSStepFunctions\./, '')]
      const reply = (status: number, body: unknown) => {
        const text = JSON.stringify(body)
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(text) })
        res.end(text)
      }
      if (!op) return reply(400, { __type: 'UnknownOperationException', message: `unsupported ${target}` })
      try {
        reply(200, op(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>))
      } catch (err) {
        if (err instanceof SfnError) return reply(400, { __type: err.type, message: err.message })
        reply(500, { __type: 'InternalFailure', message: (err as Error).message })
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `http://127.0.0.1:${port}`,
    executions,
    get transitions() {
      return transitions
    },
    async close() {
      for (const w of waiters.values()) if (w.state === 'waiting') w.reject?.(namedError('States.Runtime', 'local endpoint closed'))
      await Promise.allSettled([...executions.values()].map((e) => e.done))
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
