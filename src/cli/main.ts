/**
 * `wsds serve [flags]` runs the gateway; `wsds keys generate [--count N] [--id ID]` prints
 * a new key set. Bad configuration exits 2 with one line saying which setting is wrong.
 */
import { pino } from 'pino'
import { isWsdsError } from '../core/errors.ts'
import { generateKeySet } from '../core/keyset.ts'
import { createRandomPool } from '../core/random.ts'
import { SETTINGS, loadConfig } from '../server/config.ts'
import { rechallengeCommand } from './rechallenge.ts'

const USAGE = `usage:
  wsds serve [options]                 run the gateway (options override environment variables)
  wsds keys generate [--count N] [--id ID]   print a new key set as JSON
  wsds rechallenge (--id ID | --address IP | --origin ORIGIN | --all) [--pow-bits N] [--url URL]
                                       re-challenge connections through the operations endpoint;
                                       token from WSDS_ADMIN_TOKEN or stdin, never argv

serve options (environment variable in brackets):
${SETTINGS.map((s) => `  ${(s.flag + ' <value>').padEnd(30)} ${s.help} [${s.env}]`).join('\n')}
`

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

async function serve(args: string[]): Promise<void> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE)
    return
  }
  const config = loadConfig(process.env, args)
  // JSON lines for machines; pino-pretty only when a person is watching the terminal.
  const logger = process.stdout.isTTY
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
    if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
      process.stdout.write(USAGE)
      return
    }
    fail(`unknown command "${argv.join(' ')}"\n${USAGE}`)
  } catch (err) {
    if (isWsdsError(err) && (err.code === 'ERR_CONFIG' || err.code === 'ERR_KEYSET')) fail(err.message)
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') fail(`address in use: ${(err as Error).message}`)
    throw err
  }
}

await main(process.argv.slice(2))
