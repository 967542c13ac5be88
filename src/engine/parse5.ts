/**
 * The gateway's side of engine checks (docs/protocol.md, "Engine checks"): the tree a
 * standards-conforming HTML parser builds for a snippet, computed with parse5, a maintained
 * implementation of the WHATWG parsing algorithm that passes the html5lib tests. Core gets
 * it injected (src/core/engine-check.ts EngineChecks), so core itself stays library-free.
 */
import { parse } from 'parse5'
import type { EngineChecks, EngineMode } from '../core/engine-check.ts'
import { treeSignature, type TreeNode } from '../core/program.ts'

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

/** Engine checks for LifecycleContext; undefined when off, so no snippet is drawn at all. */
export function createEngineChecks(mode: EngineMode): EngineChecks | undefined {
  return mode === 'off' ? undefined : { mode, treeOf: htmlTreeSignature }
}
