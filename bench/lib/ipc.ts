/**
 * A tiny request/response protocol over Node's child-process IPC channel, shared by the
 * orchestrator (bench/run.ts) and its children (servers under test, the load generator).
 * A child says `{type:'ready', ...info}` once, then answers `{id, cmd, args}` with
 * `{id, result}` or `{id, error}`. A child exits when its parent goes away, so nothing the
 * bench started outlives it.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

type Handler = (args: any) => unknown

export interface Request {
  id: number
  cmd: string
  args?: unknown
}

/** Child side: registers command handlers and reports ready with `info`. */
export function serveCommands(info: Record<string, unknown>, handlers: Record<string, Handler>): void {
  if (process.send === undefined) throw new Error('this script is started by bench/run.ts (needs an IPC channel)')
  const all: Record<string, Handler> = {
    usage: () => usage(),
    gc: async () => {
      const gc = (globalThis as { gc?: () => void }).gc
      if (gc !== undefined) {
        gc()
        await new Promise((r) => setTimeout(r, 50))
        gc()
      }
      return { ...usage(), gc: gc !== undefined }
    },
    exit: () => {
      setImmediate(() => process.exit(0))
      return true
    },
    ...handlers,
  }
  process.on('message', (msg: Request) => {
    const handler = all[msg.cmd]
    if (handler === undefined) {
      process.send!({ id: msg.id, error: `unknown command ${msg.cmd}` })
      return
    }
    Promise.resolve()
      .then(() => handler(msg.args))
      .then(
        (result) => process.send!({ id: msg.id, result }),
        (err: unknown) => process.send!({ id: msg.id, error: err instanceof Error ? err.stack ?? err.message : String(err) }),
      )
  })
  process.on('disconnect', () => process.exit(0))
  process.send({ type: 'ready', ...info })
}

export function usage() {
  const cpu = process.cpuUsage()
  const mem = process.memoryUsage()
  return { cpuUserUs: cpu.user, cpuSystemUs: cpu.system, heapUsed: mem.heapUsed, rss: mem.rss }
}

export interface Child {
  name: string
  proc: ChildProcess
  pid: number
  info: Record<string, any>
  call<T = any>(cmd: string, args?: unknown, timeoutMs?: number): Promise<T>
  stop(): Promise<void>
}

let fdLimitChecked: { soft: number; hard: number } | null = null

/** Soft and hard open-file limits of this process (what children inherit). */
export function fdLimits(): { soft: number; hard: number } {
  if (fdLimitChecked === null) {
    const read = (flag: string) => {
      const text = execFileSync('sh', ['-c', `ulimit ${flag}`], { encoding: 'utf8' }).trim()
      return text === 'unlimited' ? Number.POSITIVE_INFINITY : Number(text)
    }
    fdLimitChecked = { soft: read('-Sn'), hard: read('-Hn') }
  }
  return fdLimitChecked
}

/**
 * Starts `node --import tsx <script>` as a child with an IPC channel and waits for ready.
 * When `minFds` is above the inherited soft limit, the child is started through a shell
 * that raises it first (`ulimit -n`, up to the hard limit) and then execs node.
 */
export async function startChild(
  name: string,
  script: string,
  options: { env?: Record<string, string>; execArgv?: string[]; minFds?: number; readyTimeoutMs?: number; wrapper?: string[] } = {},
): Promise<Child> {
  const nodeArgs = ['--import', 'tsx', ...(options.execArgv ?? []), fileURLToPath(new URL(script, new URL('../', import.meta.url)))]
  const env = { ...process.env, ...options.env }
  const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc']
  let proc: ChildProcess
  const { soft, hard } = fdLimits()
  if (options.minFds !== undefined && options.minFds > soft) {
    const want = Math.min(hard, Math.max(options.minFds, 65535))
    const quoted = [process.execPath, ...nodeArgs].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ')
    proc = spawn('sh', ['-c', `ulimit -n ${want} && exec ${quoted}`], { cwd: ROOT, env, stdio })
  } else if (options.wrapper !== undefined && options.wrapper.length > 0) {
    // A tool that runs node under it (valgrind, bench/handshake-cpu.ts --callgrind).
    const [tool, ...toolArgs] = options.wrapper as [string, ...string[]]
    proc = spawn(tool, [...toolArgs, process.execPath, ...nodeArgs], { cwd: ROOT, env, stdio })
  } else {
    proc = spawn(process.execPath, nodeArgs, { cwd: ROOT, env, stdio })
  }
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>()
  let nextId = 1
  let exited = false
  const exitedP = new Promise<void>((resolve) =>
    proc.once('exit', (code, signal) => {
      exited = true
      for (const p of pending.values()) p.reject(new Error(`${name} exited (${code ?? signal}) during a call`))
      pending.clear()
      resolve()
    }),
  )
  const info = await new Promise<Record<string, any>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not report ready`)), options.readyTimeoutMs ?? 30_000)
    proc.once('exit', (code) => reject(new Error(`${name} exited with ${code} before ready`)))
    proc.on('message', (msg: any) => {
      if (msg?.type === 'ready') {
        clearTimeout(timer)
        resolve(msg)
        return
      }
      const p = pending.get(msg?.id)
      if (p === undefined) return
      pending.delete(msg.id)
      if (msg.error !== undefined) p.reject(new Error(`${name}: ${msg.error}`))
      else p.resolve(msg.result)
    })
  })
  return {
    name,
    proc,
    pid: proc.pid!,
    info,
    call(cmd, args, timeoutMs = 120_000) {
      if (exited) return Promise.reject(new Error(`${name} has exited`))
      const id = nextId++
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id)
          reject(new Error(`${name}: ${cmd} took over ${timeoutMs} ms`))
        }, timeoutMs)
        pending.set(id, {
          resolve: (v) => (clearTimeout(timer), resolve(v as any)),
          reject: (e) => (clearTimeout(timer), reject(e)),
        })
        proc.send({ id, cmd, args } satisfies Request)
      })
    },
    async stop() {
      if (exited) return
      try {
        proc.send({ id: 0, cmd: 'exit' } satisfies Request)
      } catch {
        // channel already closed
      }
      const timer = setTimeout(() => proc.kill('SIGKILL'), 3000)
      await exitedP
      clearTimeout(timer)
    },
  }
}

/** VmRSS of a process, KiB, from /proc/<pid>/status. */
export function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(m[1])
}
