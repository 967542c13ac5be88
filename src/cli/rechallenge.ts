/**
 * `wsds rechallenge`: asks a running gateway for operator re-challenges through
 * POST /wsds/admin/rechallenge (docs/protocol.md, "Step-up"). The token comes from
 * WSDS_ADMIN_TOKEN or stdin, never argv: argv is visible to every user of the host (ps).
 */
import type { Readable, Writable } from 'node:stream'
import { ADMIN_RECHALLENGE_PATH, parseRechallengeRequest } from '../core/operations.ts'

export const RECHALLENGE_USAGE = `usage: wsds rechallenge (--id ID | --address IP | --origin ORIGIN | --all) [--pow-bits N] [--url URL]
  --url       gateway (or its metrics port) base URL [WSDS_ADMIN_URL]
              (default http://127.0.0.1:$WSDS_METRICS_PORT, else :$PORT, else :8080)
  --pow-bits  proof of work for that challenge, 1..32 bits
  token: WSDS_ADMIN_TOKEN, else the first line of stdin
exit status: 0 done, 1 refused by the gateway or unreachable, 2 bad usage`

export interface CliIo {
  env: Record<string, string | undefined>
  stdin: Readable & { isTTY?: boolean }
  stdout: Writable
  stderr: Writable
}

async function readFirstLine(stdin: Readable): Promise<string> {
  let text = ''
  for await (const chunk of stdin) {
    text += String(chunk)
    if (text.includes('\n') || text.length > 4096) break
  }
  return text.split('\n')[0]!.trim()
}

/** Runs the command; resolves with the exit status. */
export async function rechallengeCommand(args: readonly string[], io: CliIo): Promise<number> {
  const usage = (why: string): number => {
    io.stderr.write(`wsds rechallenge: ${why}\n${RECHALLENGE_USAGE}\n`)
    return 2
  }
  const body: Record<string, unknown> = {}
  let url = io.env.WSDS_ADMIN_URL ?? `http://127.0.0.1:${io.env.WSDS_METRICS_PORT ?? io.env.PORT ?? 8080}`
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const value = args[i + 1]
    const take = (): string | null => (value === undefined || value.startsWith('--') ? null : (i++, value))
    if (arg === '--help' || arg === '-h') {
      io.stdout.write(RECHALLENGE_USAGE + '\n')
      return 0
    }
    if (arg === '--all') body.all = true
    else if (arg === '--id' || arg === '--address' || arg === '--origin' || arg === '--pow-bits' || arg === '--url') {
      const v = take()
      if (v === null) return usage(`${arg} needs a value`)
      if (arg === '--id') body.connectionId = v
      else if (arg === '--address') body.address = v
      else if (arg === '--origin') body.origin = v
      else if (arg === '--url') url = v
      else if (!/^\d+$/.test(v)) return usage(`--pow-bits must be a whole number, got ${JSON.stringify(v)}`)
      else body.powBits = Number(v)
    } else if (arg === '--token' || arg.startsWith('--token=')) return usage('the token is never taken from argv: set WSDS_ADMIN_TOKEN or pipe it on stdin')
    else return usage(`unknown option ${arg}`)
  }
  const parsed = parseRechallengeRequest(body)
  if (!parsed.ok) return usage(parsed.error.replace(/"(connectionId|address|origin|all|powBits)"/g, (_, k: string) => ({ connectionId: '--id', address: '--address', origin: '--origin', all: '--all', powBits: '--pow-bits' })[k]!))
  let endpoint: URL
  try {
    endpoint = new URL(ADMIN_RECHALLENGE_PATH, url)
  } catch {
    return usage(`--url: not a URL: ${JSON.stringify(url)}`)
  }
  let token = io.env.WSDS_ADMIN_TOKEN?.trim() ?? ''
  if (token === '') {
    if (io.stdin.isTTY) io.stderr.write('admin token: ')
    token = await readFirstLine(io.stdin)
  }
  if (token === '') return usage('no token: set WSDS_ADMIN_TOKEN or pipe it on stdin')
  let res: Response
  try {
    res = await fetch(endpoint, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    })
  } catch (cause) {
    io.stderr.write(`wsds rechallenge: cannot reach ${endpoint.href}: ${(cause as Error).message}\n`)
    return 1
  }
  const text = await res.text()
  if (res.status === 200) {
    io.stdout.write(text.endsWith('\n') ? text : text + '\n')
    return 0
  }
  const hint = res.status === 401 ? ' (wrong token)' : res.status === 404 ? ' (is WSDS_ADMIN_TOKEN set on the gateway, and is this its metrics port when that is separate?)' : ''
  io.stderr.write(`wsds rechallenge: gateway answered ${res.status}${hint}: ${text}\n`)
  return 1
}
