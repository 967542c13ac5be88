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
  /** Tree signature (src/core/program.ts treeSignature) of the snippet as the HTML standard parses it. */
  treeOf(html: string): string
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

function charRefs(d: Draw): string {
  let out = ''
  const n = 1 + d.int(3)
  for (let i = 0; i < n; i++) {
    const kind = d.int(3)
    const code = 65 + d.int(26)
    out += kind === 0 ? pick(d, NAMED) : kind === 1 ? `&#${code};` : `&#x${code.toString(16)};`
    out += word(d)
  }
  return out
}

const FRAGMENTS: ReadonlyArray<(d: Draw) => string> = [
  // Misnested formatting: the adoption agency closes x and reopens y after it.
  (d) => {
    const [x, y] = twoFormatting(d)
    return `<${x}>${word(d)}<${y}>${word(d)}</${x}>${word(d)}</${y}>`
  },
  // Formatting across a block: the adoption agency with a furthest block moves the block out.
  (d) => {
    const x = pick(d, FORMATTING)
    return `<${x}>${word(d)}<p>${word(d)}</${x}>${word(d)}</p>`
  },
  // Implied tbody, and td / tr closed by their siblings and by </table>.
  (d) => `<table><tr><td>${word(d)}<td>${word(d)}<tr><td>${word(d)}</table>`,
  // A p closed by the next p and by a block start tag.
  (d) => {
    const block = pick(d, BLOCKS)
    return `<p>${word(d)}<p>${word(d)}<${block}>${word(d)}</${block}>`
  },
  // li closed by the next li, the list by its end tag.
  (d) => `<ul><li>${word(d)}<li>${charRefs(d)}</ul>`,
  // A stray </p> inserts an empty p element.
  (d) => `${word(d)}</p>${word(d)}`,
  // Character references in text, inside an element.
  (d) => `<span>${charRefs(d)}</span>`,
  // A comment node.
  (d) => `<!--${word(d)}-->`,
]

/** Draws a snippet of 3 to 5 fragments; every draw differs in order, tags and text. */
export function drawSnippet(d: Draw): string {
  let html = ''
  const n = 3 + d.int(3)
  for (let i = 0; i < n; i++) html += pick(d, FRAGMENTS)(d)
  return html
}

/** Browser family from a User-Agent, for engine-check metrics; a handful of fixed labels. */
export function browserFamily(userAgent: string | undefined): 'chromium' | 'firefox' | 'safari' | 'other' {
  if (userAgent === undefined) return 'other'
  if (/Firefox\//.test(userAgent)) return 'firefox'
  if (/Chrom(e|ium)\/|Edg\//.test(userAgent)) return 'chromium'
  if (/Safari\/|AppleWebKit\//.test(userAgent)) return 'safari'
  return 'other'
}
