/**
 * Finds the real servers tests need (redis-server, nginx, caddy, chromium). Locally a
 * missing binary skips the tests that need it; in CI (CI=true) it fails them, so a broken
 * install step can never pass as green.
 */
import { execFileSync, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'

export function findBinary(name: string, candidates: string[] = []): string | null {
  for (const path of candidates) {
    try {
      execFileSync(path, ['--version'], { stdio: 'ignore' })
      return path
    } catch {}
  }
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null
  } catch {
    return null
  }
}

/**
 * Returns a node:test `skip` value: false when the binary exists; a reason string when it is
 * missing locally; throws in CI.
 */
export function requireBinary(name: string, candidates: string[] = []): { path: string; skip: false } | { path: null; skip: string } {
  const path = findBinary(name, candidates)
  if (path !== null) return { path, skip: false }
  if (process.env.CI === 'true') throw new Error(`${name} is required in CI but was not found (see .ci/run)`)
  return { path: null, skip: `${name} not installed (apt-get install ${name})` }
}

/** A free TCP port on loopback (bind to 0, read, release). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })
}

/**
 * Resolves once something accepts TCP connections on loopback `port`. Rejects after
 * `timeoutMs`, or at once when `child` (the process expected to listen) has exited;
 * `describe` supplies context (its logs) for the error.
 */
export function waitForPort(
  port: number,
  options: { timeoutMs: number; name: string; child?: ChildProcess; describe?: () => string },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs
  const context = () => (options.describe ? `:\n${options.describe()}` : '')
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const child = options.child
      if (child && (child.exitCode !== null || child.signalCode !== null)) {
        reject(new Error(`${options.name} exited (${child.exitCode ?? child.signalCode}) before listening${context()}`))
        return
      }
      const sock = connect(port, '127.0.0.1')
      sock.once('connect', () => {
        sock.destroy()
        resolve()
      })
      sock.once('error', () => {
        sock.destroy()
        if (Date.now() > deadline) reject(new Error(`${options.name} did not listen on ${port} within ${options.timeoutMs} ms${context()}`))
        else setTimeout(attempt, 20)
      })
    }
    attempt()
  })
}
