/**
 * Engine checks (docs/protocol.md, "Engine checks"): a randomly drawn, deliberately
 * malformed HTML snippet whose parse tree the WHATWG HTML parsing algorithm fixes exactly.
 * The page parses it with its own engine (DOMParser); the gateway with a maintained parser
 * injected by the adapter (src/engine/parse5.ts), since core imports no libraries.
 *
 * Only constructs whose result the standard fixes and every current engine implements
 * alike are drawn (each has html5lib tree-construction tests): the adoption agency on
 * misnested formatting elements, implied tbody, p closed by a block or by another p, li
 * closed by li, a stray </p> that creates an empty p, and named and numeric character
 * references. Every fragment leaves the stack of open elements at body, so fragments
 * compose without changing one another's trees.
 */

export type EngineMode = 'off' | 'monitor' | 'enforce'
export const ENGINE_MODES: readonly EngineMode[] = ['off', 'monitor', 'enforce']

/** What the lifecycle needs for engine checks; absent or mode 'off' means none are drawn. */
export interface EngineChecks {
  mode: EngineMode
  /**
   * Tree signature (src/core/program.ts treeSignature) of a snippet as the HTML standard
   * parses it, from a parser. Absent: the tree each drawn construct is known to give
   * (drawEngineSnippet), which costs nothing per challenge; src/engine/parse5.ts checks
   * that against parse5 when it starts and passes parse5 here if they ever disagree.
   */
  treeOf?(html: string): string
}

/** Engine check result of one answer, for metrics. */
export type EngineVerdict = 'match' | 'mismatch' | 'missing'

export interface Draw {
  int(n: number): number
}

const FORMATTING = ['b', 'i', 'em', 'strong', 'u', 's', 'small'] as const
const BLOCKS = ['div', 'section', 'article', 'aside', 'blockquote', 'ul', 'h2'] as const
// Named references every engine has, with and without their meaning mattering: the parser
// replaces them, so the tree holds the character.
const NAMED = ['&amp;', '&lt;', '&gt;', '&quot;', '&nbsp;', '&copy;', '&eacute;', '&para;'] as const
const NAMED_CHARS = ['&', '<', '>', '"', '\u00a0', '\u00a9', '\u00e9', '\u00b6'] as const

/**
 * A snippet and its tree signature, built side by side. Text directly in body merges with
 * the text next to it into one node, as the parser's "insert a character" does, and a
 * comment before anything else goes to the Document (the "initial" insertion mode), not
 * into body.
 */
class SnippetBuilder {
  html = ''
  tree = ''
  #text = ''
  #started = false
  /** Text directly in body: `html` as written, `data` as parsed. */
  text(html: string, data: string = html): void {
    this.html += html
    this.#text += data
    this.#started = true
  }
  /** An element or comment directly in body, with its subtree's signature. */
  node(html: string, tree: string): void {
    this.html += html
    if (this.#text !== '') {
      this.tree += '"' + this.#text
      this.#text = ''
    }
    this.tree += tree
    this.#started = true
  }
  comment(data: string): void {
    if (this.#started) this.node(`<!--${data}-->`, '!' + data)
    else this.html += `<!--${data}-->`
  }
  done(): { html: string; tree: string } {
    this.node('', '')
    return { html: this.html, tree: this.tree }
  }
}

function word(d: Draw): string {
  let w = ''
  const n = 1 + d.int(6)
  for (let i = 0; i < n; i++) w += String.fromCharCode(97 + d.int(26))
  return w
}

function pick<T>(d: Draw, list: readonly T[]): T {
  return list[d.int(list.length)]!
}

function twoFormatting(d: Draw): [string, string] {
  const x = pick(d, FORMATTING)
  let y = pick(d, FORMATTING)
  while (y === x) y = pick(d, FORMATTING)
  return [x, y]
}

/** Character references with words after them: the HTML and the text the parser makes of it. */
function charRefs(d: Draw): { html: string; text: string } {
  let html = ''
  let text = ''
  const n = 1 + d.int(3)
  for (let i = 0; i < n; i++) {
    const kind = d.int(3)
    const code = 65 + d.int(26)
    if (kind === 0) {
      const j = d.int(NAMED.length)
      html += NAMED[j]!
      text += NAMED_CHARS[j]!
    } else {
      html += kind === 1 ? `&#${code};` : `&#x${code.toString(16)};`
      text += String.fromCharCode(code)
    }
    const w = word(d)
    html += w
    text += w
  }
  return { html, text }
}

// Each fragment with the tree the standard gives it (html5lib tree-construction tests).
const FRAGMENTS: ReadonlyArray<(d: Draw, b: SnippetBuilder) => void> = [
  // Misnested formatting: the adoption agency closes x and reopens y after it.
  (d, b) => {
    const [x, y] = twoFormatting(d)
    const w1 = word(d), w2 = word(d), w3 = word(d)
    b.node(`<${x}>${w1}<${y}>${w2}</${x}>${w3}</${y}>`, `<${x}>"${w1}<${y}>"${w2}>><${y}>"${w3}>`)
  },
  // Formatting across a block: the adoption agency with a furthest block moves the block out.
  (d, b) => {
    const x = pick(d, FORMATTING)
    const w1 = word(d), w2 = word(d), w3 = word(d)
    b.node(`<${x}>${w1}<p>${w2}</${x}>${w3}</p>`, `<${x}>"${w1}><p><${x}>"${w2}>"${w3}>`)
  },
  // Implied tbody, and td / tr closed by their siblings and by </table>.
  (d, b) => {
    const w1 = word(d), w2 = word(d), w3 = word(d)
    b.node(`<table><tr><td>${w1}<td>${w2}<tr><td>${w3}</table>`, `<table><tbody><tr><td>"${w1}><td>"${w2}>><tr><td>"${w3}>>>>`)
  },
  // A p closed by the next p and by a block start tag.
  (d, b) => {
    const block = pick(d, BLOCKS)
    const w1 = word(d), w2 = word(d), w3 = word(d)
    b.node(`<p>${w1}<p>${w2}<${block}>${w3}</${block}>`, `<p>"${w1}><p>"${w2}><${block}>"${w3}>`)
  },
  // li closed by the next li, the list by its end tag.
  (d, b) => {
    const w = word(d)
    const refs = charRefs(d)
    b.node(`<ul><li>${w}<li>${refs.html}</ul>`, `<ul><li>"${w}><li>"${refs.text}>>`)
  },
  // A stray </p> inserts an empty p element.
  (d, b) => {
    b.text(word(d))
    b.node('</p>', '<p>>')
    b.text(word(d))
  },
  // Character references in text, inside an element.
  (d, b) => {
    const refs = charRefs(d)
    b.node(`<span>${refs.html}</span>`, `<span>"${refs.text}>`)
  },
  // A comment node.
  (d, b) => b.comment(word(d)),
]

/**
 * Draws a snippet of 3 to 5 fragments (every draw differs in order, tags and text) with the
 * tree signature its body has when parsed as a whole document, as DOMParser does.
 */
export function drawEngineSnippet(d: Draw): { html: string; tree: string } {
  const b = new SnippetBuilder()
  const n = 3 + d.int(3)
  for (let i = 0; i < n; i++) pick(d, FRAGMENTS)(d, b)
  return b.done()
}

/** Draws a snippet of 3 to 5 fragments; every draw differs in order, tags and text. */
export function drawSnippet(d: Draw): string {
  return drawEngineSnippet(d).html
}

/** Browser family from a User-Agent, for engine-check metrics; a handful of fixed labels. */
export function browserFamily(userAgent: string | undefined): 'chromium' | 'firefox' | 'safari' | 'other' {
  if (userAgent === undefined) return 'other'
  if (/Firefox\//.test(userAgent)) return 'firefox'
  if (/Chrom(e|ium)\/|Edg\//.test(userAgent)) return 'chromium'
  if (/Safari\/|AppleWebKit\//.test(userAgent)) return 'safari'
  return 'other'
}
