/**
 * Challenge generation and checking (PROTOCOL.md, "What the challenge must achieve").
 *
 * A challenge is a small random program over four 32-bit lanes. It absorbs, in a random
 * order, a few randomly chosen keys of the page's key set, a fresh 128-bit nonce and the
 * page's `location.hostname`, each with its own randomly drawn round of operations, then
 * mixes the lanes and prints them as 32 hex digits. A second, smaller program over the
 * nonce and the hostname alone gives an 8-hex-digit tag that lets the gateway tell a wrong
 * domain from a wrong key. The answer is `<tag>.<digest>`.
 *
 * The server never runs the JavaScript it emits: `createChallenge` interprets the same
 * program natively to get the expected answer. Only 32-bit integer operations that JS
 * defines exactly (`Math.imul`, `|0`, `>>>`, `^`) are used, so the browser's result and
 * the server's agree bit for bit, and nothing needs `crypto.subtle`.
 */
import { constantTimeEqual, toHex } from './encoding.ts'
import { drawEngineSnippet, type EngineChecks, type EngineVerdict } from './engine-check.ts'
import type { KeySet } from './keyset.ts'
import {
  ADD_CHAR,
  ADD_LANE,
  MUL_CHAR,
  MUL_CONST,
  ROTATE,
  XOR_CHAR,
  XOR_LANE,
  XOR_SHIFT,
  encodeProgram,
  runProgram,
  type Input,
  type Op,
  type Program,
  type SmallHash,
  type WireProgram,
} from './program.ts'
import type { ChallengeForm } from './protocol.ts'
import { below, readUint32, type RandomSource } from './random.ts'

/** Keys drawn from the key set per challenge. */
export const KEYS_PER_CHALLENGE = 4
export const NONCE_BYTES = 16

export interface CreateChallengeOptions {
  keySet: KeySet
  /** Hostname of the upgrade's Origin; the answer must have been computed on this host. */
  hostname: string
  random: RandomSource
  /** Form to send (default 'code'). */
  form?: ChallengeForm
  /** Engine checks to draw (docs/protocol.md, "Engine checks"); absent or 'off': none. */
  engine?: EngineChecks
}

export interface CodeChallenge {
  form: 'code'
  /** Source of one function expression, sent in the `challenge` frame. */
  code: string
  /** What the answer's `result` must equal; keep it server-side only. */
  expected: string
}

export interface ProgramChallenge {
  form: 'program'
  /** Program JSON for the SDK's interpreter (docs/protocol.md, "The program form"). */
  program: WireProgram
  expected: string
}

export type Challenge = CodeChallenge | ProgramChallenge

/** `engine` is present when the challenge drew an engine check. */
export type AnswerCheck =
  | { ok: true; engine?: EngineVerdict }
  | { ok: false; reason: 'wrong-answer' | 'bad-domain'; engine?: EngineVerdict }

/** Length of `<tag>.<digest>`, the part every answer has. */
const MAIN_LENGTH = 41

/**
 * Draws a fresh challenge: random keys, nonce, program shape and identifiers. `expected`
 * (server-side only) is `<tag>.<digest>`, with `.<engine>` when an engine check was drawn.
 */
export function createChallenge(options: CreateChallengeOptions & { form?: 'code' }): CodeChallenge
export function createChallenge(options: CreateChallengeOptions & { form: 'program' }): ProgramChallenge
export function createChallenge(options: CreateChallengeOptions): Challenge
export function createChallenge(options: CreateChallengeOptions): Challenge {
  const { keySet, hostname, random } = options
  const draws = new Drawer(random)
  const nonce = toHex(random.bytes(NONCE_BYTES))
  const engine = options.engine && options.engine.mode !== 'off' ? options.engine : null
  const program = drawProgram(draws, keySet.keys.length, engine !== null)
  const tree = engine === null || program.engine === undefined ? null : engine.treeOf === undefined ? program.engine.tree : engine.treeOf(program.engine.html)
  const expected = runProgram(program, keySet.keys, nonce, hostname, tree)
  if (options.form === 'program') return { form: 'program', program: encodeProgram(program, nonce), expected }
  return { form: 'code', code: emitProgram(program, nonce, draws), expected }
}

/**
 * Compares an answer's `result` with the expected value in constant time. Shape errors and
 * digest mismatches are `wrong-answer`; a well-formed answer whose domain tag differs is
 * `bad-domain`. The engine part (when expected) is judged separately: `engine` says whether
 * it matched, and only `enforceEngine` makes a mismatch fail the answer.
 */
export function checkAnswer(expected: string, result: unknown, enforceEngine = false): AnswerCheck {
  const engineExpected = expected.length > MAIN_LENGTH ? expected.slice(MAIN_LENGTH + 1) : null
  const shapeOk =
    typeof result === 'string' &&
    (result.length === MAIN_LENGTH || (engineExpected !== null && result.length === expected.length && result[MAIN_LENGTH] === '.'))
  if (!shapeOk) return { ok: false, reason: 'wrong-answer' }
  const tagOk = constantTimeEqual(result.slice(0, 8), expected.slice(0, 8))
  const digestOk = constantTimeEqual(result.slice(8, MAIN_LENGTH), expected.slice(8, MAIN_LENGTH))
  const verdict: { engine?: EngineVerdict } = {}
  if (engineExpected !== null) {
    verdict.engine = result.length === MAIN_LENGTH ? 'missing' : constantTimeEqual(result.slice(MAIN_LENGTH + 1), engineExpected) ? 'match' : 'mismatch'
  }
  if (!tagOk) return { ok: false, reason: 'bad-domain', ...verdict }
  if (!digestOk || (enforceEngine && verdict.engine !== undefined && verdict.engine !== 'match')) return { ok: false, reason: 'wrong-answer', ...verdict }
  return { ok: true, ...verdict }
}

/** Hands out 32-bit draws from one batch of random bytes. */
class Drawer {
  #random: RandomSource
  #bytes: Uint8Array = new Uint8Array(0)
  #next = 0
  constructor(random: RandomSource) {
    this.#random = random
  }
  u32(): number {
    if (this.#next * 4 >= this.#bytes.length) {
      this.#bytes = this.#random.bytes(256)
      this.#next = 0
    }
    return readUint32(this.#bytes, this.#next++)
  }
  int(n: number): number {
    return below(this.u32(), n)
  }
}

function drawOp(d: Drawer, kinds: readonly number[], lanes: number, lane?: number): Op {
  const bits = d.u32()
  const kind = kinds[below(bits, kinds.length)]!
  const a = lane ?? (bits >>> 3) % lanes
  // b is a different lane than a, so lane-to-lane ops never degenerate (a^=a is zero).
  const b = (a + 1 + ((bits >>> 6) % (lanes - 1))) % lanes
  const r = 1 + ((bits >>> 9) % 31)
  const k = (d.u32() | 1) | 0
  return { kind, a, b, r, k }
}

const CHAR_KINDS = [XOR_CHAR, MUL_CHAR, ADD_CHAR] as const
const MIX_KINDS = [ROTATE, ADD_LANE, XOR_LANE, XOR_SHIFT, MUL_CONST] as const

/**
 * One round, run per character. The character is folded into exactly two different lanes,
 * once each, and everything after that is a bijection of the state (rotations, odd
 * multiplies, xor-shifts, adding or xoring another lane). So no draw can make a character
 * cancel out (as `s ^= t; s = imul(s ^ t, k)` on one lane would): each round is injective
 * in the character, and every character of every input counts.
 */
function drawRound(d: Drawer, lanes: number): Op[] {
  const first = drawOp(d, CHAR_KINDS, lanes)
  const ops = [first, drawOp(d, CHAR_KINDS, lanes, (first.a + 1 + d.int(lanes - 1)) % lanes)]
  const extra = 1 + d.int(3)
  for (let i = 0; i < extra; i++) ops.push(drawOp(d, MIX_KINDS, lanes))
  // At least one lane-to-lane op, so a character spreads beyond the lanes it landed in.
  ops.push(drawOp(d, [ADD_LANE, XOR_LANE], lanes))
  return ops
}

/** A two-lane hash with its own round and avalanche (the domain tag, the engine check). */
function drawSmallHash(d: Drawer): SmallHash {
  const ops = drawRound(d, 2)
  const final: Op[] = []
  // Its own avalanche: without it, a final `a ^= b` in the round can drop a lane from the
  // output, and same-length inputs collide far more often than 2^-32.
  for (let round = 0; round < 2; round++) {
    for (let lane = 0; lane < 2; lane++) {
      final.push({ kind: XOR_SHIFT, a: lane, b: 0, r: 13 + d.int(6), k: 0 })
      final.push({ kind: MUL_CONST, a: lane, b: 0, r: 0, k: (d.u32() | 1) | 0 })
      final.push({ kind: ADD_LANE, a: lane, b: 1 - lane, r: 0, k: 0 })
    }
  }
  return { seed: [d.u32() | 0, d.u32() | 0], ops, final }
}

/** A program with, when it has an engine check, the tree signature its snippet parses to. */
type DrawnProgram = Program & { engine?: Program['engine'] & { tree: string } }

function drawProgram(d: Drawer, keyCount: number, engineCheck: boolean): DrawnProgram {
  const inputs: Input[] = [{ nonce: true }, { host: true }]
  for (let i = 0; i < KEYS_PER_CHALLENGE; i++) inputs.push({ key: d.int(keyCount) })
  // Fisher-Yates: the order in which inputs are absorbed is part of the polymorphism.
  for (let i = inputs.length - 1; i > 0; i--) {
    const j = d.int(i + 1)
    ;[inputs[i], inputs[j]] = [inputs[j]!, inputs[i]!]
  }
  const steps = inputs.map((input) => ({ input, ops: drawRound(d, 4) }))
  const final: Op[] = []
  // Finalization: every lane gets a multiply, a shift-xor and a neighbour, twice, so each
  // output bit depends on every lane (an avalanche, with drawn constants).
  for (let round = 0; round < 2; round++) {
    for (let lane = 0; lane < 4; lane++) {
      const k = (d.u32() | 1) | 0
      const r = 13 + d.int(6)
      final.push({ kind: XOR_SHIFT, a: lane, b: 0, r, k: 0 })
      final.push({ kind: MUL_CONST, a: lane, b: 0, r: 0, k })
      final.push({ kind: ADD_LANE, a: lane, b: (lane + 1 + round) % 4, r: 0, k: 0 })
    }
  }
  const program: DrawnProgram = {
    seed: [d.u32() | 0, d.u32() | 0, d.u32() | 0, d.u32() | 0],
    steps,
    final,
    tag: drawSmallHash(d),
  }
  if (engineCheck) {
    const snippet = drawEngineSnippet(d)
    program.engine = { html: snippet.html, tree: snippet.tree, ...drawSmallHash(d) }
  }
  return program
}

// --- emitter (client side source) -------------------------------------------------------

// No 'd' or 'i': two-letter names must never form a keyword (do, if, in).
const NAME_POOL = 'abcefgjmnopqrsuvwyzABCDEFGHJKLMNPQRSTUVWXYZ'

function emitOp(op: Op, lane: readonly string[], t: string): string {
  const A = lane[op.a]!
  const B = lane[op.b]!
  switch (op.kind) {
    case XOR_CHAR:
      return `${A}^=${t};`
    case MUL_CHAR:
      return `${A}=Math.imul(${A}^${t},${op.k});`
    case ADD_CHAR:
      return `${A}=(${A}+Math.imul(${t},${op.k}))|0;`
    case ROTATE:
      return `${A}=(${A}<<${op.r})|(${A}>>>${32 - op.r});`
    case ADD_LANE:
      return `${A}=(${A}+${B})|0;`
    case XOR_LANE:
      return `${A}^=${B};`
    case XOR_SHIFT:
      return `${A}^=${A}>>>${op.r};`
    default:
      return `${A}=Math.imul(${A},${op.k});`
  }
}

function emitOps(ops: readonly Op[], lane: readonly string[], t: string): string {
  let out = ''
  for (let i = 0; i < ops.length; i++) out += emitOp(ops[i]!, lane, t)
  return out
}

/**
 * The avalanche is built as triples (xor-shift, multiply, add a lane) on one lane; each
 * triple is one statement in the source, with the same result as the three in sequence.
 */
function emitAvalanche(ops: readonly Op[], lane: readonly string[]): string {
  let out = ''
  for (let i = 0; i + 2 < ops.length; i += 3) {
    const shift = ops[i]!
    const A = lane[shift.a]!
    out += `${A}=(Math.imul(${A}^${A}>>>${shift.r},${ops[i + 1]!.k})+${lane[ops[i + 2]!.b]!})|0;`
  }
  return out
}

const NAME_FIRST = NAME_POOL.split('')
const NAME_SECOND = 'abcdefghijklmnopqrstuvwxyz'

/** `v` as 8 hex digits, in the page. */
function emitHex(v: string): string {
  return `('0000000'+((${v})>>>0).toString(16)).slice(-8)`
}

/** One absorb loop over `source`, its round inlined: straight-line code that differs every time. */
function emitLoop(text: string, idx: string, t: string, source: string, ops: string): string {
  return `${text}=${source};for(${idx}=0;${idx}<${text}.length;${idx}++){${t}=${text}.charCodeAt(${idx});${ops}}`
}

/**
 * The source of a challenge: one function expression. It uses single quotes only and no
 * backslash, so the `challenge` frame carries it without a JSON escape
 * (src/core/protocol.ts encodeServerMessage): every character is from the name pool, the
 * operators, digits, the nonce's hex and the engine snippet's fixed alphabet.
 */
function emitProgram(p: Program, nonce: string, d: Drawer): string {
  // Fresh identifiers per challenge: nothing in the source is stable enough to pattern-match.
  // Distinct first letters (a partial Fisher-Yates over the pool) keep the names distinct.
  const pool = NAME_FIRST.slice()
  const names: string[] = []
  for (let i = 0; i < 18; i++) {
    const j = i + d.int(pool.length - i)
    const first = pool[j]!
    pool[j] = pool[i]!
    names.push(first + NAME_SECOND[d.int(26)]!)
  }
  const [arg, keys, host, text, idx, t, tg0, tg1, l0, l1, l2, l3, en0, en1, walk, node, out, child] = names as [
    string, string, string, string, string, string, string, string, string, string, string, string, string, string, string, string, string, string,
  ]
  const lanes = [l0, l1, l2, l3]
  const tagLanes = [tg0, tg1]
  const quotedNonce = `'${nonce}'`
  let body = `var ${keys}=${arg}.keys,${host}=String(location.hostname),${text},${idx},${t},${l0}=${p.seed[0]},${l1}=${p.seed[1]},${l2}=${p.seed[2]},${l3}=${p.seed[3]},${tg0}=${p.tag.seed[0]},${tg1}=${p.tag.seed[1]};`
  for (const step of p.steps) {
    const source = 'key' in step.input ? `${keys}[${step.input.key}]` : 'nonce' in step.input ? quotedNonce : host
    body += emitLoop(text, idx, t, source, emitOps(step.ops, lanes, t))
  }
  body += emitAvalanche(p.final, lanes)
  const tagRound = emitOps(p.tag.ops, tagLanes, t)
  body += emitLoop(text, idx, t, quotedNonce, tagRound) + emitLoop(text, idx, t, host, tagRound)
  body += emitAvalanche(p.tag.final, tagLanes)
  // The result so far lives in `text`; the engine part is appended only if the page could run it.
  body += `${text}=${emitHex(tg1)}+'.'+${emitHex(l0)}+${emitHex(l1)}+${emitHex(l2)}+${emitHex(l3)};`
  if (p.engine) {
    // The tree signature of src/core/program.ts treeSignature, over the page's own parse.
    // Without a DOM the answer goes without its engine part: WSDS_ENGINE_CHECKS decides.
    // `child` holds the double quote that marks a text node (String.fromCharCode(34): the
    // source has no double quote of its own); the snippet has no quote or backslash.
    const result = text
    const walkFn = `function ${walk}(${node}){var ${out}='',${child}=${node}.firstChild;for(;${child};${child}=${child}.nextSibling)${out}+=${child}.nodeType==1?'<'+${child}.localName+'>'+${walk}(${child})+'>':${child}.nodeType==3?String.fromCharCode(34)+${child}.data:${child}.nodeType==8?'!'+${child}.data:'';return ${out}}`
    const parsed = `${walk}(new DOMParser().parseFromString('${p.engine.html}','text/html').body)`
    const engineRound = emitOps(p.engine.ops, [en0, en1], t)
    // The absorb loops reuse `text`, so the main result moves to `out` first.
    let engine = `var ${en0}=${p.engine.seed[0]},${en1}=${p.engine.seed[1]},${out}=${parsed};`
    engine += emitLoop(text, idx, t, quotedNonce, engineRound) + emitLoop(text, idx, t, out, engineRound)
    engine += emitAvalanche(p.engine.final, [en0, en1])
    body += `var ${node}=${result};try{${walkFn}${engine}${node}+='.'+${emitHex(en1)}}catch(${child}){}return ${node};`
  } else {
    body += `return ${text};`
  }
  return `function(${arg}){${body}}`
}
