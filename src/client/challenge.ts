/**
 * Challenge evaluation, both forms (PROTOCOL.md, "Challenge forms"), and the answer: `code`
 * through the page's evaluator, `program` through the interpreter the gateway uses
 * (src/core/program.ts), then the proof of work when the challenge asks for it.
 */
import { WsdsError } from '../core/errors.ts'
import type { AnswerMessage, ChallengeMessage } from '../core/protocol.ts'
import { decodeProgram, runProgram, treeSignature, type TreeNode } from '../core/program.ts'
import type { Settings } from './options.ts'

export interface AnswerContext {
  /** Whether the socket that got the challenge is still the session's, and the session goes on. */
  live(): boolean
  /**
   * Whether `token` is still the socket's latest challenge. Only the latest has an
   * outstanding token: an answer to an older one (a re-challenge came meanwhile) would be
   * `bad-token`, which costs the connection.
   */
  latest(token: string): boolean
  send(answer: AnswerMessage): void
  /** The challenge cannot run here (ERR_CONFIG): the session gives up. */
  fail(error: WsdsError): void
}

/** Computes and sends the answer to `challenge`, or calls `fail`; sends nothing once stale. */
export async function answerChallenge(challenge: ChallengeMessage, settings: Pick<Settings, 'keys' | 'evaluate'>, ctx: AnswerContext): Promise<void> {
  let result: unknown
  try {
    result = await evaluateChallenge(challenge, settings)
  } catch (cause) {
    // The same code path fails on every connection (CSP without 'unsafe-eval', a missing
    // `location`), so reconnecting would only loop.
    if (ctx.live()) ctx.fail(new WsdsError('ERR_CONFIG', `${challenge.form ?? 'code'} challenge failed (code needs 'unsafe-eval'; offer program)`, { cause }))
    return
  }
  const current = () => ctx.live() && ctx.latest(challenge.token)
  if (!current()) return
  // Proof of work (docs/protocol.md): solved in slices that yield, so the page and its
  // requests (still admitted during a re-challenge) carry on meanwhile.
  // A difficulty the solver refuses (over 32 bits) gets no answer: the gateway's deadline decides.
  // The solver (a pure-JS SHA-256: no crypto.subtle on plain http) is loaded on first use,
  // so bundlers that split code fetch it only when a challenge asks for work.
  const work = challenge.pow
    ? await import('./pow.ts').then(({ solvePow }) => solvePow(challenge.token, challenge.pow!.bits, { cancelled: () => !ctx.live() })).catch(() => null)
    : undefined
  if (work === null || !current()) return
  // undefined would drop `result` from the JSON, and the gateway would call it bad-message;
  // an undefined `pow` is dropped, as it should be.
  ctx.send({ action: 'answer', token: challenge.token, result: result ?? null, pow: work })
}

/** The challenge's result; throws when it cannot be computed here. */
export async function evaluateChallenge(challenge: ChallengeMessage, { keys, evaluate }: Pick<Settings, 'keys' | 'evaluate'>): Promise<unknown> {
  if (challenge.form === 'program') return answerProgram(challenge.program, keys)
  const fn = evaluate(challenge.code)
  if (typeof fn !== 'function') throw new TypeError('code is no function')
  return fn({ keys })
}

/**
 * Runs a `program` challenge with the interpreter the gateway uses (src/core/program.ts),
 * after the strict decoder has checked the untrusted JSON. No eval anywhere on this path.
 */
function answerProgram(json: unknown, keys: readonly string[]): string {
  const decoded = decodeProgram(json, keys.length)
  if (decoded === null) throw new TypeError('malformed program, or keys missing')
  const { program, nonce } = decoded
  const tree = program.engine ? parseTree(program.engine.html) : null
  return runProgram(program, keys, nonce, String(location.hostname), tree)
}

type HtmlPolicy = { createHTML(html: string): unknown }
// undefined: not tried yet; null: no Trusted Types here; false: the page refused the policy.
let htmlPolicy: HtmlPolicy | null | false | undefined

/**
 * The engine check: this page's own HTML parser on the snippet, as a tree signature. The
 * document DOMParser returns is inert (no scripts run, nothing loads), so a Trusted Types
 * policy that passes the snippet through is safe; on a page whose `trusted-types` directive
 * does not allow the name `wsds` the answer goes without its engine part.
 */
function parseTree(html: string): string | null {
  if (htmlPolicy === undefined) {
    const tt = (globalThis as { trustedTypes?: { createPolicy(name: string, rules: { createHTML(s: string): string }): HtmlPolicy } }).trustedTypes
    try {
      htmlPolicy = tt ? tt.createPolicy('wsds', { createHTML: (s) => s }) : null
    } catch {
      htmlPolicy = false
    }
  }
  if (htmlPolicy === false || typeof DOMParser !== 'function') return null
  try {
    const doc = new DOMParser().parseFromString((htmlPolicy ? htmlPolicy.createHTML(html) : html) as string, 'text/html')
    return treeSignature(domTree(doc.body))
  } catch {
    return null
  }
}

function domTree(parent: Node): TreeNode[] {
  const out: TreeNode[] = []
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    out.push({ kind: n.nodeType, value: n.nodeType === 1 ? (n as Element).localName : (n as CharacterData).data ?? '', children: n.nodeType === 1 ? domTree(n) : [] })
  }
  return out
}
