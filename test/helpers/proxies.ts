/**
 * Real nginx and Caddy in front of a gateway, for tests: renders the shipped templates in
 * deploy/ into a private temporary directory, runs the proxy in the foreground as a child
 * process, keeps everything it prints, and always stops it (and nginx's workers) again.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, requireBinary, waitForPort } from './services.ts'

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url))

export const NGINX_TEMPLATE = join(DEPLOY, 'nginx', 'nginx.conf.template')
export const CADDY_TEMPLATE = join(DEPLOY, 'caddy', 'Caddyfile')
export const TRAEFIK_STATIC = join(DEPLOY, 'traefik', 'traefik.yml')
export const TRAEFIK_DYNAMIC = join(DEPLOY, 'traefik', 'dynamic.yml')

type Found = ReturnType<typeof requireBinary>

/** Debian keeps nginx in /usr/sbin, which is not on every PATH (and `nginx --version` fails). */
function locate(name: string, usual: string): Found {
  if (existsSync(usual)) return { path: usual, skip: false }
  return requireBinary(name)
}

export const nginxBinary: Found = locate('nginx', '/usr/sbin/nginx')
export const caddyBinary: Found = locate('caddy', '/usr/bin/caddy')

/** Replaces every `{{NAME}}`; a placeholder left without a value is an error, not a silent blank. */
export function renderTemplate(text: string, values: Record<string, string | number>): string {
  const out = text.replace(/\{\{([A-Z_]+)\}\}/g, (whole, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`template placeholder ${whole} has no value`)
    return String(value)
  })
  return out
}

/** Placeholder names a template uses. */
export function placeholdersOf(text: string): string[] {
  return [...new Set([...text.matchAll(/\{\{([A-Z_]+)\}\}/g)].map((m) => m[1]!))].sort()
}

export interface ProxyTargets {
  /** host:port of the WSDS gateway, or the absolute path of its Unix socket (WSDS_SOCKET). */
  gateway: string
  /** host:port of the protected service. */
  upstream: string
  /**
   * host:port of the site behind everything else (the templates' {{APP}}); default: the
   * gateway, so tests can load its demo page through the proxy. The shipped configs never
   * point there: /metrics and the demo are not for the public.
   */
  app?: string
  /** Port to listen on (default: a free one). */
  port?: number
}

export interface RunningProxy {
  name: string
  port: number
  /** http://127.0.0.1:port */
  url: string
  dir: string
  /** The rendered configuration file. */
  configPath: string
  /** Everything the proxy wrote to stdout and stderr so far. */
  output(): string
  /** Stops the proxy (SIGTERM, then SIGKILL of its process group) and removes its directory. Idempotent. */
  stop(): Promise<void>
}

const running = new Set<ChildProcess>()
const MAX_OUTPUT_CHARS = 256 * 1024

// Last line of defence: a test process that dies without running its after hooks must not
// leave a proxy (or nginx's workers) listening. Only our own process groups are signalled.
process.once('exit', () => {
  for (const child of running) killGroup(child, 'SIGKILL')
})
// Detached children do not get the terminal's Ctrl-C: pass it on, then die of it as usual.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of running) killGroup(child, 'SIGKILL')
    process.kill(process.pid, signal)
  })
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    try {
      child.kill(signal)
    } catch {}
  }
}

async function startProcess(options: {
  name: string
  binary: string
  args: string[]
  env?: Record<string, string>
  dir: string
  configPath: string
  port: number
  /** Log files the proxy writes (relative to dir), shown by output() after the console output. */
  logFiles?: string[]
}): Promise<RunningProxy> {
  const { name, dir, port } = options
  // Its own process group (detached), so stopping it reaches nginx's worker processes too.
  const child = spawn(options.binary, options.args, {
    cwd: dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  running.add(child)
  // Only the tail is kept: Caddy logs every request, and the bench sends hundreds of thousands.
  let out = ''
  const capture = (c: Buffer) => {
    out += c.toString()
    if (out.length > MAX_OUTPUT_CHARS) out = out.slice(-MAX_OUTPUT_CHARS / 2)
  }
  child.stdout!.on('data', capture)
  child.stderr!.on('data', capture)
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running.delete(child)
      resolve()
    })
    child.once('error', (err) => {
      out += `spawn error: ${err.message}\n`
      running.delete(child)
      resolve()
    })
  })
  let files = ''
  const readLogs = () => {
    files = ''
    for (const file of options.logFiles ?? []) {
      try {
        files += `--- ${file} ---\n${readFileSync(join(dir, file), 'utf8')}`
      } catch {}
    }
  }
  const output = () => {
    if (existsSync(dir)) readLogs()
    return files === '' ? out : `${out}\n${files}`
  }
  let stopping: Promise<void> | null = null
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null && running.has(child)) {
        killGroup(child, 'SIGTERM')
        const timer = setTimeout(() => killGroup(child, 'SIGKILL'), 5000)
        await exited
        clearTimeout(timer)
        // nginx's workers leave with their master; make sure of it.
        killGroup(child, 'SIGKILL')
      }
      readLogs()
      rmSync(dir, { recursive: true, force: true })
    })()
    return stopping
  }
  try {
    await waitForPort(port, { child, timeoutMs: 15_000, describe: output, name })
  } catch (err) {
    await stop()
    throw err
  }
  return { name, port, url: `http://127.0.0.1:${port}`, dir, configPath: options.configPath, output, stop }
}

function makeDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `wsds-${name}-`))
  // nginx started as root runs its workers as `nobody`: they must be able to enter it.
  chmodSync(dir, 0o755)
  return dir
}

/** Runs nginx on a configuration text: `nginx -p <dir> -c <conf> -g 'daemon off;'`. */
export async function runNginx(config: string, port: number): Promise<RunningProxy> {
  if (nginxBinary.path === null) throw new Error('nginx not installed')
  const dir = makeDir('nginx')
  const configPath = join(dir, 'nginx.conf')
  writeFileSync(configPath, config)
  return startProcess({
    name: 'nginx',
    binary: nginxBinary.path,
    // -e: the startup error log too goes to stderr, not to a root-owned default path.
    args: ['-p', dir + '/', '-c', configPath, '-e', 'stderr', '-g', 'daemon off;'],
    dir,
    configPath,
    port,
    logFiles: ['access.log'],
  })
}

/** Renders deploy/nginx/nginx.conf.template and runs it. */
export async function startNginx(targets: ProxyTargets): Promise<RunningProxy> {
  const port = targets.port ?? (await freePort())
  const template = readFileSync(NGINX_TEMPLATE, 'utf8')
  // nginx names a Unix socket upstream `unix:/path`.
  const gateway = targets.gateway.startsWith('/') ? `unix:${targets.gateway}` : targets.gateway
  const app = targets.app ?? targets.gateway
  return runNginx(renderTemplate(template, { LISTEN_PORT: port, GATEWAY: gateway, UPSTREAM: targets.upstream, APP: app.startsWith('/') ? `unix:${app}` : app }), port)
}

/** Runs Caddy on a Caddyfile text: `caddy run --config <file> --adapter caddyfile`. */
export async function runCaddy(config: string, port: number): Promise<RunningProxy> {
  if (caddyBinary.path === null) throw new Error('caddy not installed')
  const dir = makeDir('caddy')
  const configPath = join(dir, 'Caddyfile')
  writeFileSync(configPath, config)
  for (const sub of ['data', 'config', 'home']) mkdirSync(join(dir, sub))
  return startProcess({
    name: 'caddy',
    binary: caddyBinary.path,
    args: ['run', '--config', configPath, '--adapter', 'caddyfile'],
    // Caddy keeps certificates and autosaved config under these: inside the temp dir.
    env: { XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), HOME: join(dir, 'home') },
    dir,
    configPath,
    port,
  })
}

/** Renders deploy/caddy/Caddyfile and runs it. */
export async function startCaddy(targets: ProxyTargets): Promise<RunningProxy> {
  const port = targets.port ?? (await freePort())
  const template = readFileSync(CADDY_TEMPLATE, 'utf8')
  // Caddy names a Unix socket upstream `unix//path`.
  const gateway = targets.gateway.startsWith('/') ? `unix/${targets.gateway}` : targets.gateway
  const app = targets.app ?? targets.gateway
  return runCaddy(renderTemplate(template, { LISTEN_PORT: port, GATEWAY: gateway, UPSTREAM: targets.upstream, APP: app.startsWith('/') ? `unix/${app}` : app }), port)
}
