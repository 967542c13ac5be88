/** A private redis-server for tests: own port, no persistence, stoppable and restartable. */
import { spawn, type ChildProcess } from 'node:child_process'
import { freePort, waitForPort } from './services.ts'

export interface RedisServer {
  port: number
  url: string
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>
  /** Starts it again on the same port, empty (no persistence). */
  start(): Promise<void>
}

export async function startRedisServer(binary: string): Promise<RedisServer> {
  const port = await freePort()
  let child: ChildProcess | null = null
  const start = async () => {
    child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
      stdio: 'ignore',
    })
    await waitForPort(port, { timeoutMs: 5000, name: 'redis-server', child: child! })
  }
  const stop = async () => {
    const c = child
    child = null
    if (c === null || c.exitCode !== null) return
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve())
      c.kill('SIGTERM')
    })
  }
  await start()
  return { port, url: `redis://127.0.0.1:${port}/0`, stop, start }
}
