/**
 * Policy rules (PROTOCOL.md, "Policy rules: clients that are not browsers"): which requests
 * skip the WSDS check (`allow`), are refused outright (`deny`) or need a verified connection
 * (`verify`). Pure: the caller decodes the file (YAML or JSON) and hashes service tokens;
 * this module validates the decoded data, compiles it, and matches an AccessRequest.
 *
 * Choices where PROTOCOL.md is silent are written down in docs/protocol.md ("Policy rules").
 */
import type { AccessRequest } from './access.ts'
import { WsdsError } from './errors.ts'

export type PolicyAction = 'allow' | 'deny' | 'verify'

export const POLICY_ACTIONS: readonly PolicyAction[] = ['allow', 'deny', 'verify']

/** One rule as written in the file, after validation (lists normalised). */
export interface PolicyRuleSpec {
  name: string
  match: {
    path?: string[]
    methods?: string[]
    cidr?: string[]
    token_sha256?: string[]
  }
  action: PolicyAction
}

export interface PolicySpec {
  rules: PolicyRuleSpec[]
  default: PolicyAction
}

/** What the rules say about one request. `rule` is null when no rule matched (the default). */
export interface PolicyMatch {
  action: PolicyAction
  rule: string | null
}

export interface CompiledRule {
  readonly name: string
  readonly action: PolicyAction
  /** Does the request (and its token's SHA-256, when it sent one) satisfy every condition? */
  matches(request: AccessRequest, tokenSha256: Uint8Array | undefined): boolean
}

export interface Policy {
  readonly spec: PolicySpec
  readonly rules: readonly CompiledRule[]
  readonly default: PolicyAction
  /** True when some rule looks at service tokens: only then is a token worth hashing. */
  readonly usesTokens: boolean
  /** True when the policy can decide anything but `verify` (an empty file with default verify cannot). */
  readonly active: boolean
  /** First match wins; no match gives the default. */
  evaluate(request: AccessRequest, tokenSha256?: Uint8Array): PolicyMatch
}

// Limits so a file cannot make matching expensive: every request walks the rules.
export const MAX_RULES = 1000
const MAX_LIST = 1000
const MAX_PATTERN_CHARS = 2048
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/
// RFC 9110 token: what a method may be.
const METHOD_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/
const HEX64_RE = /^[0-9a-fA-F]{64}$/
const MATCH_KEYS = ['path', 'methods', 'cidr', 'token_sha256'] as const
const RULE_KEYS = new Set(['name', 'match', 'action'])
const TOP_KEYS = new Set(['rules', 'default'])

const fail = (where: string, why: string): never => {
  throw new WsdsError('ERR_POLICY', `${where}: ${why}`)
}

const shown = (value: unknown): string => {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value)
  if (Array.isArray(value)) return 'a list'
  if (value === null) return 'null'
  return typeof value === 'object' ? 'a mapping' : String(value)
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/** A string or a list of strings, as a non-empty list. */
function stringList(where: string, value: unknown): string[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list)) return fail(where, `must be a string or a list of strings, got ${shown(value)}`)
  if (list.length === 0) return fail(where, 'must not be an empty list (leave the condition out instead)')
  if (list.length > MAX_LIST) return fail(where, `has ${list.length} entries (at most ${MAX_LIST})`)
  return list.map((item, i) => {
    if (typeof item !== 'string' || item.trim() === '') return fail(`${where}[${i}]`, `must be a non-empty string, got ${shown(item)}`)
    return item.trim()
  })
}

function action(where: string, value: unknown): PolicyAction {
  if (typeof value === 'string' && (POLICY_ACTIONS as readonly string[]).includes(value)) return value as PolicyAction
  return fail(where, `must be allow, deny or verify, got ${shown(value)}`)
}

/**
 * Validates decoded file data (from YAML or JSON). Throws WsdsError ERR_POLICY naming the
 * rule (by name, or by index when it has no usable name) and the field.
 */
export function parsePolicy(data: unknown): PolicySpec {
  if (data === null || data === undefined) return fail('policy', 'is empty (write `rules: []` for no rules)')
  if (!isRecord(data)) return fail('policy', `must be a mapping with rules and default, got ${shown(data)}`)
  for (const key of Object.keys(data)) if (!TOP_KEYS.has(key)) fail(`policy.${key}`, 'is not a field (known: rules, default)')
  const def = data.default === undefined ? 'verify' : action('policy.default', data.default)
  const rawRules = data.rules === undefined ? [] : data.rules
  if (!Array.isArray(rawRules)) return fail('policy.rules', `must be a list, got ${shown(rawRules)}`)
  if (rawRules.length > MAX_RULES) fail('policy.rules', `has ${rawRules.length} rules (at most ${MAX_RULES})`)
  const names = new Map<string, number>()
  const rules = rawRules.map((raw, index): PolicyRuleSpec => {
    let label = `rule #${index}`
    if (isRecord(raw) && typeof raw.name === 'string' && NAME_RE.test(raw.name)) label = `rule #${index} "${raw.name}"`
    if (!isRecord(raw)) return fail(label, `must be a mapping with name, match and action, got ${shown(raw)}`)
    for (const key of Object.keys(raw)) if (!RULE_KEYS.has(key)) fail(`${label}: ${key}`, 'is not a field (known: name, match, action)')
    if (raw.name === undefined) fail(`${label}: name`, 'is required')
    if (typeof raw.name !== 'string' || !NAME_RE.test(raw.name)) {
      fail(`${label}: name`, `must be 1-64 of [A-Za-z0-9._:-] starting with a letter or digit, got ${shown(raw.name)}`)
    }
    const name = raw.name as string
    const earlier = names.get(name)
    if (earlier !== undefined) fail(`${label}: name`, `is not unique (rule #${earlier} has it too)`)
    names.set(name, index)
    if (raw.action === undefined) fail(`${label}: action`, 'is required (allow, deny or verify)')
    const act = action(`${label}: action`, raw.action)
    if (!isRecord(raw.match)) return fail(`${label}: match`, `must be a mapping of conditions (${MATCH_KEYS.join(', ')}), got ${shown(raw.match)}`)
    const match: PolicyRuleSpec['match'] = {}
    for (const key of Object.keys(raw.match)) {
      if (!(MATCH_KEYS as readonly string[]).includes(key)) fail(`${label}: match.${key}`, `is not a condition (known: ${MATCH_KEYS.join(', ')})`)
    }
    const m = raw.match
    if (m.path !== undefined) {
      match.path = stringList(`${label}: match.path`, m.path).map((p, i) => {
        const why = globProblem(p)
        return why === null ? p : fail(`${label}: match.path${Array.isArray(m.path) ? `[${i}]` : ''}`, `${why}, got ${shown(p)}`)
      })
    }
    if (m.methods !== undefined) {
      match.methods = stringList(`${label}: match.methods`, m.methods).map((v, i) =>
        METHOD_RE.test(v) ? v.toUpperCase() : fail(`${label}: match.methods[${i}]`, `is not an HTTP method, got ${shown(v)}`),
      )
    }
    if (m.cidr !== undefined) {
      match.cidr = stringList(`${label}: match.cidr`, m.cidr).map((v, i) => {
        if (parseCidr(v) === null) fail(`${label}: match.cidr[${i}]`, `is not an IPv4 or IPv6 address or CIDR block, got ${shown(v)}`)
        return v
      })
    }
    if (m.token_sha256 !== undefined) {
      match.token_sha256 = stringList(`${label}: match.token_sha256`, m.token_sha256).map((v, i) =>
        HEX64_RE.test(v)
          ? v.toLowerCase()
          : fail(`${label}: match.token_sha256[${i}]`, `must be 64 hex digits (wsds policy hash-token prints one), got ${shown(v)}`),
      )
    }
    if (Object.keys(match).length === 0) fail(`${label}: match`, `needs at least one condition (${MATCH_KEYS.join(', ')})`)
    return { name, match, action: act }
  })
  return { rules, default: def }
}

// ---------------------------------------------------------------------------------------
// Path globs: `*` matches within one segment (never `/`), `**` as a whole segment matches
// any number of segments, none included. Compared with the path as sent (no decoding).

function globProblem(pattern: string): string | null {
  if (pattern.length > MAX_PATTERN_CHARS) return `is longer than ${MAX_PATTERN_CHARS} characters`
  if (!pattern.startsWith('/')) return 'must start with /'
  if (pattern.includes('?') || pattern.includes('#')) return 'matches the path only: no ? or #'
  for (const segment of pattern.split('/')) {
    if (segment.includes('**') && segment !== '**') return '** must be a whole segment (/**/ or a trailing /**)'
  }
  return null
}

type SegmentMatcher = { kind: 'any' } | { kind: 'exact'; text: string } | { kind: 'star'; parts: string[] }

function compileSegment(segment: string): SegmentMatcher {
  if (segment === '**') return { kind: 'any' }
  if (!segment.includes('*')) return { kind: 'exact', text: segment }
  return { kind: 'star', parts: segment.split('*') }
}

/** `*`-glob within one segment: parts in order, first anchored at the start, last at the end. */
function matchStar(parts: readonly string[], text: string): boolean {
  const first = parts[0]!
  const last = parts[parts.length - 1]!
  if (text.length < first.length + last.length || !text.startsWith(first) || !text.endsWith(last)) return false
  let at = first.length
  const end = text.length - last.length
  for (let i = 1; i < parts.length - 1; i++) {
    const found = text.indexOf(parts[i]!, at)
    if (found === -1 || found + parts[i]!.length > end) return false
    at = found + parts[i]!.length
  }
  // A lone `*` stands for one segment, so it needs at least one character.
  return parts.length === 2 && first === '' && last === '' ? text.length > 0 : true
}

interface GlobMatcher {
  /** The pattern when it has no wildcard (then only equality matters). */
  exact: string | null
  /** Literal text every matching path starts with: a cheap test before splitting. */
  prefix: string
  /** Matches the path's segments (`path.split('/')`). */
  matchParts(parts: readonly string[]): boolean
}

function compileGlobMatcher(pattern: string): GlobMatcher {
  const why = globProblem(pattern)
  if (why !== null) throw new WsdsError('ERR_POLICY', `path glob ${JSON.stringify(pattern)}: ${why}`)
  const raw = pattern.split('/')
  const segments = raw.map(compileSegment)
  const firstWild = segments.findIndex((s) => s.kind !== 'exact')
  if (firstWild === -1) return { exact: pattern, prefix: pattern, matchParts: (parts) => parts.join('/') === pattern }
  // Up to the wildcard segment; a `**` may take no segment, so its `/` is not required.
  const prefix = raw.slice(0, firstWild).join('/') + (segments[firstWild]!.kind === 'any' ? '' : '/')
  return {
    exact: null,
    prefix,
    matchParts(parts) {
      // Iterative matching with one backtrack point per `**` (the classic wildcard algorithm
      // at segment level): linear in practice, never exponential.
      let p = 0
      let s = 0
      let starS = -1
      let starP = 0
      while (p < parts.length) {
        const seg = segments[s]
        if (seg !== undefined && seg.kind === 'any') {
          starS = s++
          starP = p
          continue
        }
        if (seg !== undefined && (seg.kind === 'exact' ? seg.text === parts[p] : matchStar(seg.parts, parts[p]!))) {
          s++
          p++
          continue
        }
        if (starS === -1) return false
        s = starS + 1
        p = ++starP
      }
      while (s < segments.length && segments[s]!.kind === 'any') s++
      // A trailing `**` may take no segment: `/api/**` matches `/api` as well as `/api/x/y`.
      return s === segments.length
    },
  }
}

/** Compiles a glob to a matcher of a path without query. */
export function compileGlob(pattern: string): (path: string) => boolean {
  const m = compileGlobMatcher(pattern)
  if (m.exact !== null) return (path) => path === m.exact
  return (path) => path.startsWith(m.prefix) && m.matchParts(path.split('/'))
}

/** The path of an origin-form request-target: everything before `?` (and `#`, never sent but cut anyway). */
export function pathOfTarget(target: string): string {
  let end = target.length
  const q = target.indexOf('?')
  if (q !== -1) end = q
  const h = target.indexOf('#')
  if (h !== -1 && h < end) end = h
  return target.slice(0, end)
}

// ---------------------------------------------------------------------------------------
// Addresses: every address becomes 16 bytes (IPv4 as IPv4-mapped IPv6, ::ffff:a.b.c.d), so
// an IPv4 block matches a client that reached a dual-stack socket as ::ffff:a.b.c.d.

function parseIPv4Into(text: string, out: Uint8Array, at: number): boolean {
  const parts = text.split('.')
  if (parts.length !== 4) return false
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!
    // No leading zeros: 010 is octal to some parsers and decimal to others.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return false
    const n = Number(part)
    if (n > 255) return false
    out[at + i] = n
  }
  return true
}

/** Parses an IPv4 or IPv6 address (a zone such as `%eth0` is ignored) to 16 bytes, or null. */
export function parseAddress(text: string): Uint8Array | null {
  const out = new Uint8Array(16)
  const zone = text.indexOf('%')
  const addr = zone === -1 ? text : text.slice(0, zone)
  if (!addr.includes(':')) {
    out[10] = 0xff
    out[11] = 0xff
    return parseIPv4Into(addr, out, 12) ? out : null
  }
  if (addr.length > 45) return null
  const halves = addr.split('::')
  if (halves.length > 2) return null
  const groupsOf = (half: string): string[] | null => (half === '' ? [] : half.split(':'))
  const head = groupsOf(halves[0]!)
  const tail = halves.length === 2 ? groupsOf(halves[1]!) : []
  if (head === null || tail === null) return null
  const words: number[] = []
  const readGroups = (groups: string[], allowV4Last: boolean): number[] | null => {
    const result: number[] = []
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!
      if (allowV4Last && i === groups.length - 1 && g.includes('.')) {
        const v4 = new Uint8Array(4)
        if (!parseIPv4Into(g, v4, 0)) return null
        result.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
        continue
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null
      result.push(parseInt(g, 16))
    }
    return result
  }
  const headWords = readGroups(head, halves.length === 1)
  const tailWords = readGroups(tail, true)
  if (headWords === null || tailWords === null) return null
  if (halves.length === 1) {
    if (headWords.length !== 8) return null
    words.push(...headWords)
  } else {
    const missing = 8 - headWords.length - tailWords.length
    // `::` stands for at least one group of zeros.
    if (missing < 1) return null
    words.push(...headWords, ...new Array<number>(missing).fill(0), ...tailWords)
  }
  for (let i = 0; i < 8; i++) {
    out[i * 2] = words[i]! >> 8
    out[i * 2 + 1] = words[i]! & 0xff
  }
  return out
}

export interface CidrBlock {
  /** The network, host bits cleared, as 16 bytes. */
  network: Uint8Array
  /** Prefix length over the 16-byte form (an IPv4 /n is 96 + n). */
  bits: number
}

/**
 * `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128). Host bits are cleared
 * (`10.1.2.3/8` is `10.0.0.0/8`), as nginx's allow does. Null when it is neither.
 */
export function parseCidr(text: string): CidrBlock | null {
  const slash = text.indexOf('/')
  const addrText = slash === -1 ? text : text.slice(0, slash)
  if (addrText.includes('%')) return null
  const network = parseAddress(addrText)
  if (network === null) return null
  const v4 = !addrText.includes(':')
  const max = v4 ? 32 : 128
  let bits = max
  if (slash !== -1) {
    const bitsText = text.slice(slash + 1)
    if (!/^(0|[1-9][0-9]{0,2})$/.test(bitsText)) return null
    bits = Number(bitsText)
    if (bits > max) return null
  }
  if (v4) bits += 96
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8))
    network[i]! &= keep === 0 ? 0 : (0xff << (8 - keep)) & 0xff
  }
  return { network, bits }
}

export function cidrContains(block: CidrBlock, address: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, block.bits - i * 8))
    if (keep === 0) return true
    const mask = (0xff << (8 - keep)) & 0xff
    if ((address[i]! & mask) !== block.network[i]) return false
  }
  return true
}

// ---------------------------------------------------------------------------------------

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2)
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return out
}

/** Equal-length digests compared without an early exit, so timing says nothing of a near miss. */
function digestEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}

/**
 * What the rules read of one request, each part computed at most once per evaluation however
 * many rules look at it.
 */
class RequestView {
  readonly request: AccessRequest
  readonly token: Uint8Array | undefined
  private pathValue: string | null | undefined
  private partsValue: string[] | undefined
  private addressValue: Uint8Array | null | undefined
  private methodValue: string | null | undefined

  constructor(request: AccessRequest, token: Uint8Array | undefined) {
    this.request = request
    this.token = token
  }
  get path(): string | null {
    if (this.pathValue === undefined) this.pathValue = this.request.target === undefined ? null : pathOfTarget(this.request.target)
    return this.pathValue
  }
  get parts(): string[] {
    return (this.partsValue ??= (this.path ?? '').split('/'))
  }
  get address(): Uint8Array | null {
    if (this.addressValue === undefined) this.addressValue = this.request.remoteAddress === undefined ? null : parseAddress(this.request.remoteAddress)
    return this.addressValue
  }
  get method(): string | null {
    if (this.methodValue === undefined) this.methodValue = this.request.method === undefined ? null : this.request.method.toUpperCase()
    return this.methodValue
  }
}

type Check = (view: RequestView) => boolean

function compileRule(spec: PolicyRuleSpec): CompiledRule & { test: Check } {
  // Cheapest first: a method set lookup, then the path, then hashes, then address bytes.
  const checks: Check[] = []
  const { path, methods, cidr, token_sha256 } = spec.match
  if (methods !== undefined) {
    const set = new Set(methods)
    checks.push((view) => view.method !== null && set.has(view.method))
  }
  if (path !== undefined) {
    const globs = path.map(compileGlobMatcher)
    checks.push((view) => {
      const p = view.path
      if (p === null) return false
      for (const g of globs) {
        if (g.exact !== null) {
          if (p === g.exact) return true
        } else if (p.startsWith(g.prefix) && g.matchParts(view.parts)) return true
      }
      return false
    })
  }
  if (token_sha256 !== undefined) {
    const digests = token_sha256.map(hexToBytes)
    checks.push((view) => {
      const token = view.token
      if (token === undefined) return false
      // Every digest is compared, so the time does not say which entry (if any) matched.
      let found = false
      for (const d of digests) found = digestEqual(d, token) || found
      return found
    })
  }
  if (cidr !== undefined) {
    const blocks = cidr.map((c) => parseCidr(c)!)
    checks.push((view) => {
      const address = view.address
      return address !== null && blocks.some((b) => cidrContains(b, address))
    })
  }
  const test: Check = (view) => {
    for (const check of checks) if (!check(view)) return false
    return true
  }
  return {
    name: spec.name,
    action: spec.action,
    test,
    matches: (request, token) => test(new RequestView(request, token)),
  }
}

/**
 * Decoded file data (or a PolicySpec, which validates the same) in, matcher out. Throws
 * WsdsError ERR_POLICY naming the rule and field.
 */
export function compilePolicy(input: unknown): Policy {
  const spec = parsePolicy(input)
  const rules = spec.rules.map(compileRule)
  const usesTokens = spec.rules.some((r) => r.match.token_sha256 !== undefined)
  const def = spec.default
  return {
    spec,
    rules,
    default: def,
    usesTokens,
    active: rules.length > 0 || def !== 'verify',
    evaluate(request, tokenSha256) {
      if (rules.length === 0) return { action: def, rule: null }
      const view = new RequestView(request, tokenSha256)
      for (const rule of rules) if (rule.test(view)) return { action: rule.action, rule: rule.name }
      return { action: def, rule: null }
    },
  }
}

/** What a rule matches, in words (`wsds policy check`). */
export function describeRule(rule: PolicyRuleSpec): string {
  const m = rule.match
  const parts: string[] = []
  if (m.path) parts.push(`path ${m.path.join(' or ')}`)
  if (m.methods) parts.push(`method ${m.methods.join('|')}`)
  if (m.cidr) parts.push(`client in ${m.cidr.map((c) => describeCidr(c)).join(' or ')}`)
  if (m.token_sha256) parts.push(`service token with SHA-256 ${m.token_sha256.map((h) => h.slice(0, 12) + '…').join(' or ')}`)
  return `${rule.action.padEnd(6)} ${rule.name}: ${parts.join(' and ')}`
}

function describeCidr(text: string): string {
  const block = parseCidr(text)!
  if (text.includes(':')) {
    const words: string[] = []
    for (let i = 0; i < 16; i += 2) words.push(((block.network[i]! << 8) | block.network[i + 1]!).toString(16))
    return `${words.join(':')}/${block.bits}`
  }
  return `${block.network.slice(12).join('.')}/${block.bits - 96}`
}

/**
 * The service token of a request (PROTOCOL.md, "Policy rules"): `X-WSDS-Service-Token: <t>`,
 * else `Authorization: Bearer <t>` (scheme case-insensitive, RFC 9110). Every front reads it here.
 */
export function serviceTokenFrom(ownHeader: string | null | undefined, authorization: string | null | undefined): string | undefined {
  if (ownHeader !== undefined && ownHeader !== null) {
    const own = ownHeader.trim()
    if (own !== '') return own
  }
  if (authorization === undefined || authorization === null || authorization.length < 8) return undefined
  if (authorization.slice(0, 7).toLowerCase() !== 'bearer ') return undefined
  const token = authorization.slice(7).trim()
  return token === '' ? undefined : token
}

/** A holder whose policy a reload may replace; fronts read `current` on every request. */
export interface PolicySource {
  readonly current: Policy
}
