/**
 * The settings declarations (src/core/settings.ts, src/server/config.ts) and what is derived
 * from them: the reader, `wsds serve` flags (node:util parseArgs), --help and README's table.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { generateKeySet } from '../src/core/keyset.ts'
import { createRandomPool } from '../src/core/random.ts'
import { PROTOCOL_SETTINGS, defaultFor, readProtocolSettings, readSettings, type Setting } from '../src/core/settings.ts'
import { SETTINGS, flagsToEnv, loadConfig } from '../src/server/config.ts'
import { parseFlags } from '../src/server/flags.ts'
import { TABLE_BEGIN, TABLE_END, formatHelp, formatTable, replaceTable } from '../src/server/settings-text.ts'

const root = new URL('..', import.meta.url).pathname

function throwsConfig(fn: () => unknown, message: string | RegExp): void {
  assert.throws(fn, (err: unknown) => {
    const e = err as { code?: string; message?: string }
    assert.equal(e.code, 'ERR_CONFIG', String(err))
    if (typeof message === 'string') assert.equal(e.message, message)
    else assert.match(e.message ?? '', message)
    return true
  })
}

let dir: string
let keysFile: string
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'wsds-settings-test-'))
  keysFile = join(dir, 'keys.json')
  const set = generateKeySet(createRandomPool(), { id: 'ks-settings' })
  writeFileSync(keysFile, JSON.stringify({ id: set.id, keys: set.keys }))
})
after(() => rmSync(dir, { recursive: true, force: true }))

/** A valid value for every setting, different from its default where that is possible. */
const sample = (): Record<string, string> => ({
  PORT: '9090',
  HOST: '0.0.0.0',
  WSDS_ALLOWED_ORIGINS: 'https://app.example,https://www.app.example:8443',
  WSDS_CORS_ORIGINS: 'none',
  WSDS_KEYS_FILE: keysFile,
  WSDS_CHALLENGE_TIMEOUT_MS: '5000',
  WSDS_RATE_LIMIT: '50',
  WSDS_STORE: 'redis://127.0.0.1:6379/2',
  WSDS_AUTH_CACHE_TTL_MS: '1000',
  WSDS_STORE_OUTAGE: 'cached',
  WSDS_STORE_PREFIX: 'app:',
  WSDS_LEASE_MS: '10000',
  WSDS_UPSTREAM: 'http://127.0.0.1:3000',
  WSDS_MODE: 'monitor',
  WSDS_TRUST_PROXY: 'on',
  WSDS_DEMO: 'on',
  WSDS_MAX_PAYLOAD_BYTES: '4096',
  WSDS_METRICS_TOKEN: 'metrics-secret',
  WSDS_METRICS_PATH: '/internal/metrics',
  WSDS_METRICS_PORT: '9100',
  WSDS_AUTH_PATH: '/auth/check',
  WSDS_SOCKET: '/run/wsds/gateway.sock',
  WSDS_SOCKET_MODE: '600',
  WSDS_CHALLENGE_FORMS: 'program',
  WSDS_ENGINE_CHECKS: 'enforce',
  WSDS_POLICY_FILE: '/etc/wsds/rules.yaml',
  WSDS_LOG_LEVEL: 'warn',
  WSDS_RECHALLENGE_MS: '60000',
  WSDS_POW_BITS: '8',
  WSDS_POW_MAX_BITS: '16',
  WSDS_ADMIN_TOKEN: 'an-admin-token-of-32-characters!',
  WSDS_BINDING: 'required',
  WSDS_BINDING_WINDOW_MS: '10000',
  WSDS_ID_RATE_LIMIT: '25',
})

describe('settings declarations', () => {
  // One loose view of both lists, so one loop checks each entry's shape.
  type AnySetting = Setting<Record<string, unknown>>
  const lists = { server: SETTINGS as unknown as readonly AnySetting[], protocol: PROTOCOL_SETTINGS as unknown as readonly AnySetting[] }

  it('give every entry a variable, a flag, a default, a parser and a help line', () => {
    for (const [layer, list] of Object.entries(lists)) {
      for (const s of list) {
        const where = `${layer} ${s.env}`
        assert.match(s.env, /^[A-Z][A-Z0-9_]*$/, where)
        assert.match(s.flag, /^--[a-z][a-z0-9]*(-[a-z0-9]+)*$/, where)
        assert.equal(typeof s.parse, 'function', where)
        assert.equal(typeof s.key, 'string', where)
        assert.ok(s.help.length >= 8 && !s.help.includes('\n') && !/\(default/i.test(s.help), `${where}: one help line, the default kept apart: ${s.help}`)
        const d = s.default
        assert.ok(d === null || typeof d === 'string' || typeof (d as { from?: unknown }).from === 'function' || typeof (d as { required?: unknown }).required === 'string', where)
        if (d === null || typeof d !== 'string' || d === '') assert.ok(s.defaultText !== undefined && s.defaultText !== '', `${where}: a default that is not plain text says in defaultText what it is`)
        if (s.negate !== undefined) assert.ok(['switch', 'off'].includes(s.negate), where)
      }
    }
  })

  it('declare each variable, flag and configuration key once per list', () => {
    for (const [layer, list] of Object.entries(lists)) {
      for (const field of ['env', 'flag', 'key'] as const) {
        const seen = list.map((s) => String(s[field]))
        assert.equal(new Set(seen).size, seen.length, `${layer}: a ${field} appears twice`)
      }
      const negatives = list.filter((s) => s.negate !== undefined).map((s) => `--no-${s.flag.slice(2)}`)
      for (const n of negatives) assert.ok(!list.some((s) => s.flag === n), `${layer}: ${n} is both a setting and a negation`)
    }
  })

  it('place every protocol setting in the server list with the same variable, flag and parser', () => {
    for (const p of PROTOCOL_SETTINGS) {
      const s = SETTINGS.find((x) => x.key === p.key)
      assert.ok(s, `${p.env} missing from the server's SETTINGS`)
      assert.equal(s.env, p.env)
      assert.equal(s.flag, p.flag)
      assert.equal(s.parse, p.parse, `${p.env}: the server parses it with core's parser`)
      assert.equal(s.help, p.help)
    }
  })

  it('cover every field of the server configuration, and nothing else', () => {
    const config = loadConfig({})
    assert.deepEqual(Object.keys(config).sort(), SETTINGS.map((s) => s.key).sort())
  })

  it('compute defaults only from settings declared before them', () => {
    for (const [layer, list] of Object.entries(lists)) {
      const declared = new Set<string>()
      for (const s of list) {
        const d = s.default
        if (d !== null && typeof d === 'object' && 'from' in d) {
          const full = loadConfig({ WSDS_ALLOWED_ORIGINS: 'https://a.example' }) as unknown as Record<string, unknown>
          const prior = new Proxy(full, {
            get(target, key) {
              assert.ok(typeof key !== 'string' || declared.has(key), `${layer} ${s.env}: its default reads ${String(key)}, declared after it`)
              return target[key as string]
            },
          })
          d.from(prior)
        }
        declared.add(String(s.key))
      }
    }
  })
})

describe('settings defaults', () => {
  it('parse: each plain default text goes through its own parser', () => {
    const prior = loadConfig({})
    for (const s of SETTINGS) {
      if (typeof s.default === 'string') assert.doesNotThrow(() => s.parse(s.default as string, s.env, prior), s.env)
    }
  })

  it('give the same configuration as the variables set to the default texts', () => {
    const base = loadConfig({})
    const explicit: Record<string, string> = {}
    for (const s of SETTINGS) {
      const text = defaultFor(s, base)
      if (text !== null && text !== '') explicit[s.env] = text
    }
    assert.deepEqual(loadConfig(explicit), base)
  })

  it('derive the allowlist from PORT and the CORS origins from the allowlist', () => {
    const config = loadConfig({ PORT: '4100' })
    assert.deepEqual(config.allowedOrigins, ['http://localhost:4100', 'http://127.0.0.1:4100'])
    assert.deepEqual(config.corsOrigins, config.allowedOrigins)
    assert.deepEqual(loadConfig({ WSDS_ALLOWED_ORIGINS: 'https://a.example' }).corsOrigins, ['https://a.example'])
  })

  it('shorten the auth cache TTL on DynamoDB, where it bounds revocation', () => {
    assert.equal(loadConfig({}).authCacheTtlMs, 300_000)
    assert.equal(loadConfig({ WSDS_STORE: 'redis://127.0.0.1:6379/0' }).authCacheTtlMs, 300_000)
    assert.equal(loadConfig({ WSDS_STORE: 'dynamodb://wsds?region=eu-west-1' }).authCacheTtlMs, 5000)
    assert.equal(loadConfig({ WSDS_STORE: 'dynamodb://wsds', WSDS_AUTH_CACHE_TTL_MS: '0' }).authCacheTtlMs, 0)
  })

  it('cap proof-of-work escalation at 20 bits, or at the base when that is higher, and only when proof of work is on', () => {
    assert.equal(loadConfig({}).powMaxBits, 0)
    assert.equal(loadConfig({ WSDS_POW_BITS: '8' }).powMaxBits, 20)
    assert.equal(loadConfig({ WSDS_POW_BITS: '24' }).powMaxBits, 24)
    throwsConfig(() => loadConfig({ WSDS_POW_BITS: '12', WSDS_POW_MAX_BITS: '10' }), 'WSDS_POW_MAX_BITS="10": must be at least WSDS_POW_BITS (12)')
  })

  it('turn the demo off by default when a keys file is loaded, and on when asked', () => {
    assert.equal(loadConfig({}).demo, true)
    assert.equal(loadConfig({ WSDS_KEYS_FILE: keysFile }).demo, false)
    assert.equal(loadConfig({ WSDS_KEYS_FILE: keysFile, WSDS_DEMO: 'on' }).demo, true)
  })

  it('treat a blank variable as unset', () => {
    assert.deepEqual(loadConfig({ PORT: ' ', WSDS_STORE: '', WSDS_DEMO: '  ' }), loadConfig({}))
  })

  it('require the allowlist where nothing derives it (the Lambda side), with the same message as before', () => {
    throwsConfig(() => readProtocolSettings({}), 'WSDS_ALLOWED_ORIGINS must name at least one origin')
    throwsConfig(() => readSettings(PROTOCOL_SETTINGS, { WSDS_ALLOWED_ORIGINS: '  ' }), 'WSDS_ALLOWED_ORIGINS must name at least one origin')
    const read = readProtocolSettings({ WSDS_ALLOWED_ORIGINS: 'https://app.example', WSDS_ID_RATE_LIMIT: 'OFF' })
    assert.deepEqual(read.allowedOrigins, ['https://app.example'])
    assert.equal(read.idRateLimit, null)
  })

  it('read the protocol settings the same on both deployments', () => {
    const env = sample()
    const server = loadConfig(env) as unknown as Record<string, unknown>
    const aws = readProtocolSettings(env) as unknown as Record<string, unknown>
    for (const p of PROTOCOL_SETTINGS) assert.deepEqual(aws[p.key], server[p.key], p.env)
  })
})

describe('settings errors', () => {
  it('name the variable and the bad value, whether set in the environment or by a flag', () => {
    const cases: [Record<string, string>, string][] = [
      [{ PORT: 'eighty' }, 'PORT="eighty": must be a whole number in [0, 65535]'],
      [{ PORT: '70000' }, 'PORT="70000": must be in [0, 65535]'],
      [{ WSDS_RATE_LIMIT: 'lots' }, 'WSDS_RATE_LIMIT="lots": must be a whole number in [1, 1000000]'],
      [{ WSDS_MODE: 'Monitor' }, 'WSDS_MODE="Monitor": must be enforce or monitor'],
      [{ WSDS_ENGINE_CHECKS: ' Strict ' }, 'WSDS_ENGINE_CHECKS="strict": must be off, monitor or enforce'],
      [{ WSDS_DEMO: 'maybe' }, 'WSDS_DEMO="maybe": must be on or off'],
      [{ WSDS_STORE_OUTAGE: 'open' }, 'WSDS_STORE_OUTAGE="open": must be closed or cached'],
      [{ WSDS_SOCKET_MODE: '999' }, 'WSDS_SOCKET_MODE="999": must be octal permissions like 660'],
      [{ WSDS_LOG_LEVEL: 'loud' }, 'WSDS_LOG_LEVEL="loud": must be debug, info, warn, error or silent'],
      [{ WSDS_UPSTREAM: 'ftp://x' }, 'WSDS_UPSTREAM="ftp://x": must be an http(s) URL'],
      [{ WSDS_CHALLENGE_FORMS: 'code,riddle' }, 'WSDS_CHALLENGE_FORMS="code,riddle": unknown form "riddle"; the forms are code, program'],
      [{ WSDS_ADMIN_TOKEN: 'short' }, 'WSDS_ADMIN_TOKEN: must be 16-512 printable characters without spaces (value not shown)'],
    ]
    for (const [env, message] of cases) {
      throwsConfig(() => loadConfig(env), message)
      const [name, value] = Object.entries(env)[0]!
      const s = SETTINGS.find((x) => x.env === name)!
      // A switch takes no value on the command line (--demo, --no-demo): only the variable can be wrong.
      if (s.negate !== 'switch') throwsConfig(() => loadConfig({}, [`${s.flag}=${value}`]), message)
    }
  })
})

describe('wsds serve flags (node:util parseArgs)', () => {
  it('round-trip every setting as --name value and as --name=value', () => {
    const env = sample()
    for (const s of SETTINGS) {
      const value = env[s.env]!
      if (s.negate === 'switch') {
        assert.deepEqual(flagsToEnv([s.flag]), { [s.env]: 'on' }, s.flag)
        continue
      }
      assert.deepEqual(flagsToEnv([s.flag, value]), { [s.env]: value }, s.flag)
      assert.deepEqual(flagsToEnv([`${s.flag}=${value}`]), { [s.env]: value }, s.flag)
    }
  })

  it('give the same configuration from flags as from the environment', () => {
    const env = sample()
    const argv = SETTINGS.flatMap((s) => (s.negate === 'switch' ? (env[s.env] === 'on' ? [s.flag] : [`--no-${s.flag.slice(2)}`]) : [s.flag, env[s.env]!]))
    assert.deepEqual(loadConfig({}, argv), loadConfig(env))
  })

  it('take --no-name for switches and for settings that can be off, and nothing else', () => {
    for (const s of SETTINGS) {
      const negative = `--no-${s.flag.slice(2)}`
      if (s.negate === undefined) throwsConfig(() => flagsToEnv([negative]), `unknown option ${negative} (see wsds serve --help)`)
      else {
        assert.deepEqual(flagsToEnv([negative]), { [s.env]: 'off' }, negative)
        // The value `off` must then mean off to the parser too.
        assert.doesNotThrow(() => loadConfig({}, [negative]), negative)
      }
    }
    assert.equal(loadConfig({}, ['--no-rate-limit']).rateLimit, null)
    assert.equal(loadConfig({ WSDS_RECHALLENGE_MS: '5000' }, ['--no-rechallenge-ms']).rechallengeMs, null)
  })

  it('let flags override the environment, and a later flag an earlier one', () => {
    assert.equal(loadConfig({ PORT: '1111' }, ['--port', '2222']).port, 2222)
    assert.equal(loadConfig({}, ['--port=1', '--port', '2']).port, 2)
    assert.equal(loadConfig({}, ['--no-demo', '--demo']).demo, true)
    assert.equal(loadConfig({}, ['--demo', '--no-demo']).demo, false)
  })

  it('refuse unknown options, missing values and stray arguments with ERR_CONFIG', () => {
    throwsConfig(() => flagsToEnv(['--prot', '80']), 'unknown option --prot (see wsds serve --help)')
    throwsConfig(() => flagsToEnv(['-p', '80']), 'unknown option -p (see wsds serve --help)')
    throwsConfig(() => flagsToEnv(['--port']), 'option --port needs a value')
    throwsConfig(() => flagsToEnv(['--port', '--host', 'x']), 'option --port needs a value')
    throwsConfig(() => flagsToEnv(['--port=']), 'option --port needs a value (PORT)')
    throwsConfig(() => flagsToEnv(['--port', '-5']), /^option --port needs a value \(for one starting with "-", write --port=-5\)$/)
    throwsConfig(() => flagsToEnv(['--demo=maybe']), 'option --demo takes no value: use --demo or --no-demo (WSDS_DEMO)')
    throwsConfig(() => flagsToEnv(['--trust-proxy', 'maybe']), /^unexpected argument "maybe": --trust-proxy takes no value/)
    throwsConfig(() => flagsToEnv(['serve']), /^unexpected argument "serve"/)
    // A value starting with a dash is still possible, written with "=" (and then checked).
    assert.deepEqual(flagsToEnv(['--port=-5']), { PORT: '-5' })
    throwsConfig(() => loadConfig({}, ['--port=-5']), 'PORT="-5": must be a whole number in [0, 65535]')
  })

  it('take a switch with the on/off words its variable takes: --demo off, --demo=off, --trust-proxy on', () => {
    assert.deepEqual(flagsToEnv(['--demo', 'off', '--port', '1']), { WSDS_DEMO: 'off', PORT: '1' })
    assert.deepEqual(flagsToEnv(['--demo=off']), { WSDS_DEMO: 'off' })
    assert.deepEqual(flagsToEnv(['--demo=on']), { WSDS_DEMO: 'on' })
    assert.deepEqual(flagsToEnv(['--trust-proxy', 'on']), { WSDS_TRUST_PROXY: 'on' })
    assert.deepEqual(flagsToEnv(['--trust-proxy', 'false']), { WSDS_TRUST_PROXY: 'off' })
    assert.deepEqual(flagsToEnv(['--trust-proxy']), { WSDS_TRUST_PROXY: 'on' })
  })

  it('refuse a list that declares one flag twice', () => {
    throwsConfig(() => parseFlags([{ env: 'A', flag: '--x' }, { env: 'B', flag: '--x' }], []), 'flag --x is declared twice (A, B)')
    throwsConfig(() => parseFlags([{ env: 'A', flag: '--x', negate: 'off' }, { env: 'B', flag: '--no-x' }], []), /--no-x is declared twice/)
  })
})

describe('settings documentation', () => {
  it('README.md has the table the declarations generate (npm run docs:settings)', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8')
    const table = formatTable(SETTINGS)
    assert.ok(readme.includes(table), 'README.md settings table is out of date: run npm run docs:settings')
    assert.equal(replaceTable(readme, table), readme)
    for (const s of SETTINGS) assert.ok(table.includes(`| \`${s.env}\` | \`${s.flag}\``), s.env)
  })

  it('escapes | inside table cells and refuses a README without the markers', () => {
    const table = formatTable([{ env: 'X', flag: '--x', default: 'a|b', help: 'one `a|b` two' }])
    assert.ok(table.includes('| `X` | `--x` | `a\\|b` | one `a\\|b` two |'), table)
    assert.throws(() => replaceTable('# no table here\n', table), /markers/)
    assert.equal(replaceTable(`a\n${TABLE_BEGIN}\nold\n${TABLE_END}\nb`, 'NEW'), 'a\nNEW\nb')
  })

  it('wsds serve --help lists every flag with its variable and default', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--help'], { cwd: root, encoding: 'utf8', timeout: 60_000 })
    assert.equal(result.status, 0, result.stderr)
    const help = result.stdout
    assert.ok(help.includes(formatHelp(SETTINGS)), 'the help prints the derived options')
    for (const s of SETTINGS) {
      assert.ok(help.includes(`[${s.env}]`), `${s.env} missing from --help`)
      assert.ok(new RegExp(`^  ${s.flag}\\b`, 'm').test(help), `${s.flag} missing from --help`)
      if (s.negate !== undefined) assert.ok(help.includes(`--no-${s.flag.slice(2)}`), s.env)
    }
    assert.match(help, /--port <value> +TCP port \(default: 8080\) \[PORT\]/)
    assert.match(help, /\(default: 300000; 5000 on DynamoDB\) \[WSDS_AUTH_CACHE_TTL_MS\]/)
    assert.ok(!help.includes('`'), 'no Markdown backticks on a terminal')
  })
})
