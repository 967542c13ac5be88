/**
 * The challenge computation as data (docs/protocol.md, "The program form"): its types, the
 * one interpreter that both the gateway (to get the expected answer) and the SDK (to answer
 * a `program` challenge under a strict CSP) run, and the strict decoder the SDK applies to
 * the untrusted JSON before running it. Only 32-bit integer operations that JS defines
 * exactly (`Math.imul`, `|0`, `>>>`, `^`) are used, so every engine agrees bit for bit.
 */

// Operation kinds. The first three fold the current character `t` into a lane.
export const XOR_CHAR = 0
export const MUL_CHAR = 1
export const ADD_CHAR = 2
export const ROTATE = 3
export const ADD_LANE = 4
export const XOR_LANE = 5
export const XOR_SHIFT = 6
export const MUL_CONST = 7

export interface Op {
  kind: number
  a: number
  b: number
  /** Rotation or shift amount, 1..31. */
  r: number
  /** Odd 32-bit multiplier (as int32). */
  k: number
}

/** Step input: a key index (>= 0), the nonce, or the page's hostname. */
export type Input = { key: number } | { nonce: true } | { host: true }

export interface Step {
  input: Input
  ops: Op[]
}

/** A two-lane hash: seed, one round per character, avalanche; its output is lane 1. */
export interface SmallHash {
  seed: [number, number]
  ops: Op[]
  final: Op[]
}

export interface Program {
  seed: [number, number, number, number]
  steps: Step[]
  final: Op[]
  tag: SmallHash
  /**
   * Engine check (docs/protocol.md, "Engine checks"): an HTML snippet the page parses with
   * its own HTML parser; the tree is hashed after the nonce into the answer's third part.
   */
  engine?: SmallHash & { html: string }
}

// One conditional chain rather than a switch: it is also the browser SDK's code, and this
// shape minifies to about half. An unknown kind leaves the lane as it is.
export function apply(s: number[], op: Op, t: number): void {
  const { kind, a, r, k } = op
  const x = s[a]!
  const y = s[op.b]!
  s[a] =
    kind === XOR_CHAR ? x ^ t
    : kind === MUL_CHAR ? Math.imul(x ^ t, k)
    : kind === ADD_CHAR ? (x + Math.imul(t, k)) | 0
    : kind === ROTATE ? (x << r) | (x >>> (32 - r))
    : kind === ADD_LANE ? (x + y) | 0
    : kind === XOR_LANE ? x ^ y
    : kind === XOR_SHIFT ? x ^ (x >>> r)
    : kind === MUL_CONST ? Math.imul(x, k)
    : x
}

function absorb(s: number[], text: string, ops: readonly Op[]): void {
  for (let j = 0; j < text.length; j++) {
    const t = text.charCodeAt(j)
    for (const op of ops) apply(s, op, t)
  }
}

export function hex32(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0')
}

function smallHash(h: SmallHash, texts: readonly string[]): string {
  const s: number[] = [...h.seed]
  for (const text of texts) absorb(s, text, h.ops)
  for (const op of h.final) apply(s, op, 0)
  // Lane 1 is written last, after it has absorbed lane 0: it depends on both.
  return hex32(s[1]!)
}

/**
 * Runs a program: `<tag>.<digest>`, plus `.<engine>` when the program has an engine check
 * and `engineTree` (the tree signature of its snippet, see treeSignature) is known.
 */
export function runProgram(p: Program, keys: readonly string[], nonce: string, hostname: string, engineTree: string | null): string {
  const s: number[] = [...p.seed]
  for (const step of p.steps) {
    const text = 'key' in step.input ? keys[step.input.key]! : 'nonce' in step.input ? nonce : hostname
    absorb(s, text, step.ops)
  }
  for (const op of p.final) apply(s, op, 0)
  let out = smallHash(p.tag, [nonce, hostname]) + '.' + s.map(hex32).join('')
  if (p.engine && engineTree !== null) out += '.' + smallHash(p.engine, [nonce, engineTree])
  return out
}

/**
 * A node of a parsed HTML tree, as both a browser DOM node and a parse5 node can be read:
 * `kind` 1 element, 3 text, 8 comment (DOM nodeType numbers).
 */
export interface TreeNode {
  kind: number
  /** Element local name, text data or comment data. */
  value: string
  children: readonly TreeNode[]
}

/**
 * The tree signature hashed by an engine check (docs/protocol.md): pre-order over the body's
 * children; an element is `<name>` + its children + `>`, text is `"` + data, a comment `!` + data.
 */
export function treeSignature(nodes: readonly TreeNode[]): string {
  let out = ''
  for (const n of nodes) {
    if (n.kind === 1) out += '<' + n.value + '>' + treeSignature(n.children) + '>'
    else if (n.kind === 3) out += '"' + n.value
    else if (n.kind === 8) out += '!' + n.value
  }
  return out
}

// --- wire format (docs/protocol.md, "The program form") ----------------------------------

/** Op on the wire: [kind, a, b, r, k]. */
export type WireOp = [number, number, number, number, number]
export interface WireSmallHash {
  seed: [number, number]
  ops: WireOp[]
  final: WireOp[]
}
export interface WireProgram {
  v: 1
  nonce: string
  seed: [number, number, number, number]
  /** [input, ops]: input >= 0 is a key index, -1 the nonce, -2 the hostname. */
  steps: Array<[number, WireOp[]]>
  final: WireOp[]
  tag: WireSmallHash
  engine?: WireSmallHash & { html: string }
}

export const PROGRAM_VERSION = 1
const NONCE_INPUT = -1
const HOST_INPUT = -2

const wireOp = (o: Op): WireOp => [o.kind, o.a, o.b, o.r, o.k]
const wireSmall = (h: SmallHash): WireSmallHash => ({ seed: h.seed, ops: h.ops.map(wireOp), final: h.final.map(wireOp) })

export function encodeProgram(p: Program, nonce: string): WireProgram {
  const wire: WireProgram = {
    v: PROGRAM_VERSION,
    nonce,
    seed: p.seed,
    steps: p.steps.map((s) => ['key' in s.input ? s.input.key : 'nonce' in s.input ? NONCE_INPUT : HOST_INPUT, s.ops.map(wireOp)]),
    final: p.final.map(wireOp),
    tag: wireSmall(p.tag),
  }
  if (p.engine) wire.engine = { html: p.engine.html, ...wireSmall(p.engine) }
  return wire
}

// Bounds for untrusted program JSON: generous over what the gateway draws (docs/protocol.md),
// tight enough that a hostile gateway cannot make the page spin.
const MAX_STEPS = 16
const MAX_ROUND_OPS = 16
const MAX_FINAL_OPS = 64
const MAX_HTML = 2048

const isInt32 = (v: unknown): v is number => typeof v === 'number' && (v | 0) === v
const isInts = (v: unknown, n: number): v is number[] => Array.isArray(v) && v.length === n && v.every(isInt32)

function decodeOps(v: unknown, lanes: number, max: number): Op[] | null {
  if (!Array.isArray(v) || v.length > max) return null
  const ops: Op[] = []
  for (const item of v) {
    if (!isInts(item, 5)) return null
    const [kind, a, b, r, k] = item as WireOp
    // Lane-to-lane ops on one lane degenerate (a ^= a is zero); shifts by 0 are not drawn.
    // `>>> 0` turns a negative lane into one far out of range.
    if (kind >>> 3 || a >>> 0 >= lanes || b >>> 0 >= lanes || r >>> 5 || (a === b && (kind === ADD_LANE || kind === XOR_LANE)) || (!r && (kind === ROTATE || kind === XOR_SHIFT))) return null
    ops.push({ kind, a, b, r, k })
  }
  return ops
}

function decodeSmall(v: unknown): SmallHash | null {
  const o = (v ?? {}) as Record<string, unknown>
  const ops = decodeOps(o.ops, 2, MAX_ROUND_OPS)
  const final = decodeOps(o.final, 2, MAX_FINAL_OPS)
  return isInts(o.seed, 2) && ops && final ? { seed: o.seed as [number, number], ops, final } : null
}

/**
 * Checks untrusted program JSON and turns it into a Program, with its nonce. Null for
 * anything outside the format: wrong version, sizes beyond the bounds, unknown op kinds,
 * lanes out of range, key indices the page does not have.
 */
export function decodeProgram(v: unknown, keyCount: number): { program: Program; nonce: string } | null {
  const o = (v ?? {}) as Record<string, unknown>
  const { nonce, seed, steps, engine } = o
  if (o.v !== PROGRAM_VERSION || typeof nonce !== 'string' || !/^[0-9a-f]{16,128}$/.test(nonce) || !isInts(seed, 4)) return null
  if (!Array.isArray(steps) || !steps.length || steps.length > MAX_STEPS) return null
  const decoded: Step[] = []
  for (const step of steps) {
    if (!Array.isArray(step) || step.length !== 2) return null
    const input: unknown = step[0]
    const ops = decodeOps(step[1], 4, MAX_ROUND_OPS)
    if (!isInt32(input) || input < HOST_INPUT || input >= keyCount || ops === null) return null
    decoded.push({ input: input === NONCE_INPUT ? { nonce: true } : input === HOST_INPUT ? { host: true } : { key: input }, ops })
  }
  const final = decodeOps(o.final, 4, MAX_FINAL_OPS)
  const tag = decodeSmall(o.tag)
  if (final === null || tag === null) return null
  const program: Program = { seed: seed as Program['seed'], steps: decoded, final, tag }
  if (engine !== undefined) {
    const small = decodeSmall(engine)
    const html = (engine as { html?: unknown } | null)?.html
    if (small === null || typeof html !== 'string' || html.length > MAX_HTML) return null
    program.engine = { ...small, html }
  }
  return { program, nonce }
}
