/**
 * `wsds serve [flags]` runs the gateway; `wsds keys generate [--count N] [--id ID]` prints
 * a new key set; `wsds policy check|hash-token` help write a rules file. Bad configuration exits 2 with one line saying which setting is wrong.
 */
import { createRequire } from 'node:module'
import { pino } from 'pino'
import { isWsdsError } from '../core/errors.ts'
import { generateKeySet } from '../core/keyset.ts'
import { createRandomPool } from '../core/random.ts'
import { describeRule } from '../core/policy.ts'
import { SETTINGS, loadConfig } from '../server/config.ts'
import { formatHelp } from '../server/settings-text.ts'
import { rechallengeCommand } from './rechallenge.ts'
import { nodeSha256, readPolicyFile } from '../server/policy-file.ts'

const USAGE = `usage:
  wsds serve [options]                 run the gateway (options override environment variables)
  wsds keys generate [--count N] [--id ID]   print a new key set as JSON
  wsds rechallenge (--id ID | --address IP | --origin ORIGIN | --all) [--pow-bits N] [--url URL]
                                       re-challenge connections through the operations endpoint;
                                       token from WSDS_ADMIN_TOKEN or stdin, never argv
  wsds policy check FILE               validate a rules file (WSDS_POLICY_FILE) and say what each rule matches
  wsds policy hash-token               read a service token on stdin, print its token_sha256 line

serve options (environment variable in brackets; a flag overrides its variable):
${formatHelp(SETTINGS)}
`

function canResolve(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg)
    return true
  } catch {
    return false
  }
}

function fail(message: string): never {
  process.stderr.write(`wsds: ${message}\n`)
  process.exit(2)
}

function keysGenerate(args: string[]): void {
  let count: number | undefined
  let id: string | undefined
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const value = args[i + 1]
    if (arg === '--count' && value !== undefined) {
      if (!/^\d+$/.test(value)) fail(`--count must be a whole number, got ${JSON.stringify(value)}`)
      count = Number(value)
      i++
    } else if (arg === '--id' && value !== undefined) {
      id = value
      i++
    } else fail(`unknown or incomplete option ${arg}\n${USAGE}`)
  }
  const keySet = generateKeySet(createRandomPool(), { count, id })
  process.stdout.write(JSON.stringify({ id: keySet.id, keys: keySet.keys }, null, 2) + '\n')
}

function policyCheck(args: string[]): void {
  if (args.length !== 1 || args[0]!.startsWith('-')) fail(`usage: wsds policy check FILE`)
  const policy = readPolicyFile(args[0]!)
  const lines = policy.spec.rules.map((rule, i) => `${String(i + 1).padStart(3)}. ${describeRule(rule)}`)
  lines.push(`     ${policy.default.padEnd(6)} anything else (default)`)
  process.stdout.write(`${args[0]}: ${policy.rules.length} rule(s), first match wins\n${lines.join('\n')}\n`)
}

// Tokens are longer than this only by mistake (a pasted file); refusing keeps stdin bounded.
const MAX_TOKEN_BYTES = 4096

async function policyHashToken(args: string[]): Promise<void> {
  // Never from argv: arguments end up in shell history and in every `ps` listing.
  if (args.length > 0) fail('wsds policy hash-token takes no arguments: it reads the token from stdin')
  if (process.stdin.isTTY) process.stderr.write('service token (then Enter, then Ctrl-D): ')
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_TOKEN_BYTES) fail(`the token on stdin is longer than ${MAX_TOKEN_BYTES} bytes`)
    chunks.push(chunk)
  }
  // One trailing newline (echo, a file, a terminal) is not part of the token; inner whitespace is.
  const token = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')
  if (token.trim() === '') fail('no token on stdin')
  if (token !== token.trim()) fail('the token starts or ends with whitespace: clients cannot send that in a header')
  const hex = Buffer.from(nodeSha256(new TextEncoder().encode(token))).toString('hex')
  process.stdout.write(`token_sha256: [${hex}]\n`)
}

async function serve(args: string[]): Promise<void> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE)
    return
  }
  const config = loadConfig(process.env, args)
  // JSON lines for machines; pino-pretty only when a person is watching the terminal and it
  // is installed (an optional peer dependency: docs/packaging.md).
  const logger = process.stdout.isTTY && canResolve('pino-pretty')
    ? pino({ level: config.logLevel, base: undefined }, pino.transport({ target: 'pino-pretty', options: { colorize: true } }))
    : pino({ level: config.logLevel, base: undefined })
  // Loaded here, not at the top: `wsds rechallenge` and `keys` need none of the server.
  const { startServer } = await import('../server/server.ts')
  const running = await startServer(config, { logger })
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    running.logger.info({ event: 'shutdown', signal }, 'closing sockets and stopping')
    // A second signal, or a close that hangs, must still end the process.
    setTimeout(() => process.exit(1), 5000).unref()
    running.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  // A client library's promise that nobody awaits (ioredis resubscribing on a connection that
  // is closing, say) must not take the gateway down: every decision already fails closed on
  // its own path, so the rejection is logged and the process goes on.
  process.on('unhandledRejection', (reason) => {
    running.logger.error({ event: 'unhandled-rejection', error: String(reason) }, 'a promise was rejected and not handled; the gateway goes on')
  })
}

async function main(argv: string[]): Promise<void> {
  const [command, sub, ...rest] = argv
  try {
    if (command === 'serve') return await serve(argv.slice(1))
    if (command === 'keys' && sub === 'generate') return keysGenerate(rest)
    if (command === 'rechallenge') {
      process.exitCode = await rechallengeCommand(argv.slice(1), { env: process.env, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr })
      return
    }
    if (command === 'policy' && sub === 'check') return policyCheck(rest)
    if (command === 'policy' && sub === 'hash-token') return await policyHashToken(rest)
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(USAGE)
      return
    }
    fail(`unknown command "${argv.join(' ')}"\n${USAGE}`)
  } catch (err) {
    if (isWsdsError(err) && (err.code === 'ERR_CONFIG' || err.code === 'ERR_KEYSET' || err.code === 'ERR_POLICY')) fail(err.message)
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') fail(`address in use: ${(err as Error).message}`)
    throw err
  }
}

await main(process.argv.slice(2))
