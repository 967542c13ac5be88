/**
 * Command-line flags derived from a settings list (src/core/settings.ts): each setting's
 * `--flag value` or `--flag=value` overrides its environment variable; a switch takes
 * `--flag` / `--no-flag`, and a setting that can be `off` also takes `--no-flag`. node:util
 * parseArgs (strict) does the parsing; this module names what is wrong in the words the
 * rest of the configuration uses (ERR_CONFIG, the flag, the variable).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { WsdsError } from '../core/errors.ts'

/** What flag parsing needs of a setting. */
export interface FlagSetting {
  env: string
  flag: `--${string}`
  negate?: 'switch' | 'off' | undefined
}

type Options = NonNullable<ParseArgsConfig['options']>

/** What each parseArgs option name means: the variable and, for a bare flag, its value. */
interface Meaning {
  env: string
  flag: string
  /** The value a flag without one stands for; undefined = it needs a value. */
  bare?: 'on' | 'off'
}

function optionsOf(list: readonly FlagSetting[]): { options: Options; meanings: Map<string, Meaning> } {
  const options: Options = {}
  const meanings = new Map<string, Meaning>()
  const add = (name: string, type: 'string' | 'boolean', meaning: Meaning) => {
    if (meanings.has(name)) throw new WsdsError('ERR_CONFIG', `flag --${name} is declared twice (${meanings.get(name)!.env}, ${meaning.env})`)
    options[name] = { type }
    meanings.set(name, meaning)
  }
  for (const s of list) {
    const name = s.flag.slice(2)
    add(name, s.negate === 'switch' ? 'boolean' : 'string', { env: s.env, flag: s.flag, ...(s.negate === 'switch' ? { bare: 'on' as const } : {}) })
    if (s.negate !== undefined) add(`no-${name}`, 'boolean', { env: s.env, flag: s.flag, bare: 'off' })
  }
  return { options, meanings }
}

const config = (message: string, cause?: unknown) => new WsdsError('ERR_CONFIG', message, cause === undefined ? undefined : { cause })

/**
 * parseArgs says only that something is wrong, in its own words: a lenient pass over the
 * same arguments finds the first offending token so the message names it like the rest of
 * the configuration errors do.
 */
function explain(argv: readonly string[], options: Options, meanings: Map<string, Meaning>, cause: unknown): WsdsError {
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true })
  let previous: Meaning | undefined
  for (const token of tokens) {
    if (token.kind === 'option') {
      const meaning = meanings.get(token.name)
      if (meaning === undefined) return config(`unknown option ${token.rawName} (see wsds serve --help)`, cause)
      if (meaning.bare !== undefined && token.value !== undefined) {
        return config(`option ${token.rawName} takes no value: use ${meaning.flag} or --no-${meaning.flag.slice(2)} (${meaning.env})`, cause)
      }
      if (meaning.bare === undefined && token.value === undefined) return config(`option ${token.rawName} needs a value`, cause)
      if (meaning.bare === undefined && !token.inlineValue && token.value?.startsWith('--')) return config(`option ${token.rawName} needs a value`, cause)
      if (meaning.bare === undefined && !token.inlineValue && token.value?.startsWith('-')) {
        return config(`option ${token.rawName} needs a value (for one starting with "-", write ${token.rawName}=${token.value})`, cause)
      }
      previous = meaning
    } else if (token.kind === 'positional') {
      const hint = previous?.bare !== undefined ? `: ${previous.flag} takes no value, use ${previous.flag} or --no-${previous.flag.slice(2)}` : ' (options are --name value or --name=value)'
      return config(`unexpected argument ${JSON.stringify(token.value)}${hint}`, cause)
    }
  }
  return config(`cannot parse the options: ${(cause as Error).message}`, cause)
}

/** Parses flags into env-named values (`on`/`off` for switches). Throws ERR_CONFIG. */
export function parseFlags(list: readonly FlagSetting[], argv: readonly string[]): Record<string, string> {
  const { options, meanings } = optionsOf(list)
  const args = switchWords(list, argv)
  let tokens
  try {
    tokens = parseArgs({ args, options, strict: true, allowPositionals: false, tokens: true }).tokens
  } catch (err) {
    throw explain(args, options, meanings, err)
  }
  const out: Record<string, string> = {}
  // In argument order, so a later flag wins over an earlier one for the same setting.
  for (const token of tokens) {
    if (token.kind !== 'option') continue
    const meaning = meanings.get(token.name)!
    if (meaning.bare !== undefined) {
      out[meaning.env] = meaning.bare
      continue
    }
    // `--port=` would otherwise silently drop PORT from the environment and use the default.
    if (token.value === undefined || token.value.trim() === '') throw config(`option ${token.rawName} needs a value (${meaning.env})`)
    out[meaning.env] = token.value
  }
  return out
}

const ON = new Set(['on', 'true', 'yes', '1'])
const OFF = new Set(['off', 'false', 'no', '0'])

/**
 * A switch's variable takes on/off, so its flag does too: `--demo off`, `--demo=off` and
 * `--trust-proxy on` read as `--no-demo` and `--trust-proxy` (what users type after reading
 * the settings table). Anything else after a switch is left for parseArgs to refuse.
 */
function switchWords(list: readonly FlagSetting[], argv: readonly string[]): string[] {
  const switches = new Set(list.filter((s) => s.negate === 'switch').map((s) => s.flag as string))
  const out: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const eq = arg.indexOf('=')
    const flag = eq === -1 ? arg : arg.slice(0, eq)
    if (!switches.has(flag)) {
      out.push(arg)
      continue
    }
    const word = (eq === -1 ? argv[i + 1] : arg.slice(eq + 1))?.trim().toLowerCase()
    const value = word === undefined ? undefined : ON.has(word) ? true : OFF.has(word) ? false : undefined
    if (value === undefined) {
      out.push(arg)
      continue
    }
    out.push(value ? flag : `--no-${flag.slice(2)}`)
    if (eq === -1) i++
  }
  return out
}
