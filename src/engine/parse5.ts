/**
 * The gateway's side of engine checks (docs/protocol.md, "Engine checks"): the tree a
 * standards-conforming HTML parser builds for a snippet, computed with parse5, a maintained
 * implementation of the WHATWG parsing algorithm that passes the html5lib tests.
 *
 * Core draws each snippet together with the tree its constructs give
 * (src/core/engine-check.ts drawEngineSnippet), so a challenge costs no parse. parse5 is
 * the reference that tree is held to: at start, a sample of fresh draws is parsed here, and
 * should the two ever disagree, every challenge is parsed with parse5 instead.
 */
import { parse } from 'parse5'
import { drawEngineSnippet, type EngineChecks, type EngineMode } from '../core/engine-check.ts'
import { treeSignature, type TreeNode } from '../core/program.ts'
import { below, createRandomPool, readUint32 } from '../core/random.ts'

interface Parse5Node {
  nodeName: string
  tagName?: string
  value?: string
  data?: string
  childNodes?: Parse5Node[]
}

function toTree(nodes: readonly Parse5Node[]): TreeNode[] {
  const out: TreeNode[] = []
  for (const n of nodes) {
    if (n.nodeName === '#text') out.push({ kind: 3, value: n.value ?? '', children: [] })
    else if (n.nodeName === '#comment') out.push({ kind: 8, value: n.data ?? '', children: [] })
    else if (n.tagName !== undefined) out.push({ kind: 1, value: n.tagName, children: toTree(n.childNodes ?? []) })
  }
  return out
}

/** Tree signature of the body that parsing `html` as a whole document gives (what DOMParser returns). */
export function htmlTreeSignature(html: string): string {
  const doc = parse(html) as unknown as Parse5Node
  const root = doc.childNodes?.find((n) => n.tagName === 'html')
  const body = root?.childNodes?.find((n) => n.tagName === 'body')
  return treeSignature(toTree(body?.childNodes ?? []))
}

/** Snippets parsed at start to hold core's trees to parse5's (a few ms). */
export const SELF_CHECK_SNIPPETS = 64

/**
 * Whether core's tree of every one of `count` fresh snippets is the one `treeOf` parses. The
 * draws need not be secret, only varied: a CSPRNG pool is simply what core draws from.
 */
export function engineTreesAgree(treeOf: (html: string) => string, count = SELF_CHECK_SNIPPETS): boolean {
  const random = createRandomPool()
  const draw = { int: (n: number) => below(readUint32(random.bytes(4), 0), n) }
  for (let i = 0; i < count; i++) {
    const snippet = drawEngineSnippet(draw)
    if (treeOf(snippet.html) !== snippet.tree) return false
  }
  return true
}

/**
 * Engine checks for LifecycleContext; undefined when off, so no snippet is drawn at all.
 * Core's trees when they agree with parse5's, else parse5 on every challenge.
 */
export function createEngineChecks(mode: EngineMode, treeOf: (html: string) => string = htmlTreeSignature): EngineChecks | undefined {
  if (mode === 'off') return undefined
  return engineTreesAgree(treeOf) ? { mode } : { mode, treeOf }
}
