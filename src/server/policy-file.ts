/**
 * WSDS_POLICY_FILE: reads a rules file (YAML, or JSON by a .json name), validates it with
 * core/policy.ts, and keeps it current: SIGHUP and a change of the file reload it; a reload
 * that fails keeps the rules in force and logs why (PROTOCOL.md, "Policy rules").
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs'
import { createRequire } from 'node:module'
import { WsdsError, isWsdsError } from '../core/errors.ts'
import { compilePolicy, type Policy, type PolicySource } from '../core/policy.ts'

/** A file larger than this is not a rules file; refusing it keeps a mistake from eating memory. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024

/** node:crypto's SHA-256, synchronous, for createFront's `sha256`. */
export { nodeSha256 } from '../crypto/node-sha256.ts'

type ParseYaml = (text: string, options: { uniqueKeys: boolean; maxAliasCount: number; prettyErrors: boolean }) => unknown
let parseYaml: ParseYaml | undefined

/**
 * The `yaml` package is an optional peer dependency (docs/packaging.md): only YAML rules files
 * need it, JSON ones do not. Loaded synchronously on first use, since rules are read at start
 * and on reload, and a missing package is named.
 */
function yamlParser(name: string): ParseYaml {
  if (parseYaml !== undefined) return parseYaml
  try {
    parseYaml = (createRequire(import.meta.url)('yaml') as { parse: ParseYaml }).parse
    return parseYaml
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw cause
    throw new WsdsError('ERR_POLICY', `${name}: install yaml to read a YAML rules file (npm install yaml), or write it as JSON with a .json name`, { cause })
  }
}

/** Decodes rules text: JSON when the name ends in .json, YAML otherwise (YAML 1.2 reads JSON too). */
export function decodePolicyText(text: string, name: string): unknown {
  if (name.toLowerCase().endsWith('.json')) {
    try {
      return JSON.parse(text)
    } catch (cause) {
      throw new WsdsError('ERR_POLICY', `${name}: not JSON: ${(cause as Error).message}`, { cause })
    }
  }
  try {
    // Duplicate keys are an error (a second `action:` must not silently win); aliases are
    // capped so a small file cannot expand into a huge one.
    return yamlParser(name)(text, { uniqueKeys: true, maxAliasCount: 100, prettyErrors: true })
  } catch (cause) {
    if ((cause as { code?: string }).code === 'ERR_POLICY') throw cause
    throw new WsdsError('ERR_POLICY', `${name}: not YAML: ${(cause as Error).message.split('\n')[0]}`, { cause })
  }
}

/** Policy text in, compiled policy out; errors name the file, then the rule and field. */
export function parsePolicyText(text: string, name: string): Policy {
  const data = decodePolicyText(text, name)
  try {
    return compilePolicy(data)
  } catch (err) {
    if (isWsdsError(err, 'ERR_POLICY')) throw new WsdsError('ERR_POLICY', `${name}: ${err.message}`, { cause: err })
    throw err
  }
}

/** Reads and compiles a rules file. Throws ERR_POLICY naming the file, the rule and the field. */
export function readPolicyFile(path: string): Policy {
  let text: string
  try {
    const bytes = readFileSync(path)
    if (bytes.length > MAX_POLICY_FILE_BYTES) throw new Error(`larger than ${MAX_POLICY_FILE_BYTES} bytes`)
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch (cause) {
    throw new WsdsError('ERR_POLICY', `${path}: cannot read: ${(cause as Error).message}`, { cause })
  }
  return parsePolicyText(text, path)
}

export interface PolicyLogger {
  info(fields: object, message: string): void
  error(fields: object, message: string): void
}

export interface PolicyFileOptions {
  logger?: PolicyLogger
  /** Reload on SIGHUP (default true). */
  sighup?: boolean
  /** How often the file's mtime and size are polled, ms (default 1000; 0 = no watching). */
  watchIntervalMs?: number
}

export interface PolicyFile extends PolicySource {
  readonly path: string
  /** Reads the file again: true when the new rules are in force, false when the old ones stay. */
  reload(reason?: string): boolean
  /** Stops watching and listening for SIGHUP. Idempotent. */
  close(): void
}

/**
 * Loads the file (throwing ERR_POLICY when it is bad: a start must not go on without the
 * rules it was told to apply), then follows it.
 */
export function openPolicyFile(path: string, options: PolicyFileOptions = {}): PolicyFile {
  const logger = options.logger
  let current = readPolicyFile(path)
  let closed = false
  const reload = (reason = 'manual'): boolean => {
    if (closed) return false
    try {
      current = readPolicyFile(path)
      logger?.info({ event: 'policy-reloaded', file: path, reason, rules: current.rules.length }, 'policy rules reloaded')
      return true
    } catch (err) {
      logger?.error(
        { event: 'policy-reload-failed', file: path, reason, error: (err as Error).message },
        'policy reload failed: the rules in force stay',
      )
      return false
    }
  }
  const onSighup = () => reload('SIGHUP')
  if (options.sighup !== false) process.on('SIGHUP', onSighup)
  // Polling, not fs.watch: editors and config managers replace the file by rename, which an
  // inotify watch on the old inode never reports; the poll sees the new mtime either way.
  const interval = options.watchIntervalMs ?? 1000
  const onChange = (now: Stats, before: Stats) => {
    if (now.mtimeMs === before.mtimeMs && now.size === before.size && now.ino === before.ino) return
    // A deleted file (size 0, mtime 0) fails to read: the rules in force stay, and say so.
    reload('file-changed')
  }
  if (interval > 0) watchFile(path, { interval, persistent: false }, onChange)
  return {
    path,
    get current() {
      return current
    },
    reload,
    close() {
      if (closed) return
      closed = true
      process.off('SIGHUP', onSighup)
      if (interval > 0) unwatchFile(path, onChange)
    },
  }
}
