/**
 * Information, not a target: how DOM emulators fare on engine checks. For each drawn
 * snippet, the tree signature from jsdom's and happy-dom's DOMParser is compared with the
 * gateway's (parse5). `node --import tsx bench/engine-emulators.ts [count]`
 */
import { Window } from 'happy-dom'
import { JSDOM } from 'jsdom'
import { drawSnippet } from '../src/core/engine-check.ts'
import { treeSignature, type TreeNode } from '../src/core/program.ts'
import { htmlTreeSignature } from '../src/engine/parse5.ts'

const count = Number(process.argv[2] ?? 1000)
const draw = { int: (n: number) => Math.floor(Math.random() * n) }

interface DomLike {
  nodeType: number
  localName?: string
  data?: string
  firstChild: DomLike | null
  nextSibling: DomLike | null
}
function domTree(parent: DomLike): TreeNode[] {
  const out: TreeNode[] = []
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    out.push({ kind: n.nodeType, value: n.nodeType === 1 ? n.localName! : (n.data ?? ''), children: n.nodeType === 1 ? domTree(n) : [] })
  }
  return out
}

const jsdom = new JSDOM('')
const happy = new Window()
const parsers: Record<string, (html: string) => string> = {
  jsdom: (html) => treeSignature(domTree(new jsdom.window.DOMParser().parseFromString(html, 'text/html').body as unknown as DomLike)),
  'happy-dom': (html) => treeSignature(domTree(new happy.DOMParser().parseFromString(html, 'text/html').body as unknown as DomLike)),
}
for (const [name, parse] of Object.entries(parsers)) {
  let match = 0
  let example = ''
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    const html = drawSnippet(draw)
    let got: string
    try {
      got = parse(html)
    } catch (e) {
      got = 'threw ' + String(e)
    }
    const want = htmlTreeSignature(html)
    if (got === want) match++
    else if (example === '') example = `${html}\n    gateway: ${want}\n    ${name}: ${got}`
  }
  console.log(`${name}: ${match} of ${count} engine checks match (${((performance.now() - started) / count).toFixed(2)} ms each)`)
  if (example) console.log('  first mismatch:\n    ' + example)
}
await happy.happyDOM.close()
