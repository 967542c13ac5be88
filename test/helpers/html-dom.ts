/**
 * A minimal DOMParser for Node tests, on parse5: enough of the DOM (nodeType, localName,
 * data, firstChild, nextSibling, body) for a `code` challenge's engine check to run the way
 * a browser runs it. Test clients only; the gateway uses src/engine/parse5.ts.
 */
import { parse } from 'parse5'

interface P5 {
  nodeName: string
  tagName?: string
  value?: string
  data?: string
  childNodes?: P5[]
}

interface ShimNode {
  nodeType: number
  localName?: string
  data?: string
  firstChild: ShimNode | null
  nextSibling: ShimNode | null
}

function build(p: P5): ShimNode | null {
  const node: ShimNode =
    p.nodeName === '#text'
      ? { nodeType: 3, data: p.value ?? '', firstChild: null, nextSibling: null }
      : p.nodeName === '#comment'
        ? { nodeType: 8, data: p.data ?? '', firstChild: null, nextSibling: null }
        : p.tagName !== undefined
          ? { nodeType: 1, localName: p.tagName, firstChild: null, nextSibling: null }
          : null!
  if (node === null) return null
  let prev: ShimNode | null = null
  for (const c of p.childNodes ?? []) {
    const child = build(c)
    if (child === null) continue
    if (prev === null) node.firstChild = child
    else prev.nextSibling = child
    prev = child
  }
  return node
}

export class NodeDOMParser {
  parseFromString(html: string): { body: ShimNode } {
    const doc = parse(html) as unknown as P5
    const body = doc.childNodes?.find((n) => n.tagName === 'html')?.childNodes?.find((n) => n.tagName === 'body')
    return { body: build(body ?? { nodeName: 'body', tagName: 'body' })! }
  }
}
