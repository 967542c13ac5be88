/**
 * Runs `wsds serve` as a real child process (what a cluster node is), reading its
 * `listening` log line to learn the port.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { KeySet } from '../../src/core/keyset.ts'

export interface NodeProcess {
  url: string
  wsUrl: string
  port: number
  child: ChildProcess
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>
  /** SIGKILL: no cleanup at all, as in a crash. */
  kill(): Promise<void>
}

export function writeKeySetFiles(sets: readonly KeySet[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'wsds-keys-'))
  return sets
    .map((set, i) => {
      const path = join(dir, `keys-${i}.json`)
      writeFileSync(path, JSON.stringify({ id: set.id, keys: set.keys }))
      return path
    })
    .join(',')
}

export function startNodeProcess(env: Record<string, string>, timeoutMs = 15_000): Promise<NodeProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve'], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', WSDS_DEMO: 'off', WSDS_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`node did not start within ${timeoutMs} ms:\n${out}`))
    }, timeoutMs)
    const onData = (chunk: Buffer) => {
      out += chunk.toString()
      const m = /"event":"listening","url":"(http:\/\/[^"]+)"/.exec(out)
      if (m && timer) {
        clearTimeout(timer)
        const url = m[1]!
        resolve({
          url,
          wsUrl: url.replace('http', 'ws') + '/wsds',
          port: Number(new URL(url).port),
          child,
          output: () => out,
          stop: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
            await exited
          },
          kill: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
            await exited
          },
        })
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()))
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`node exited with ${code} before listening:\n${out}`))
    })
  })
}
