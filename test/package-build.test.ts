/** scripts/build.ts: the declaration rewrite, and what `npm run build` left in dist/ (npm test builds first). */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, it } from 'node:test'
import { rewriteDeclarationSpecifiers, walk } from '../scripts/build.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DIST = join(ROOT, 'dist')
// Locally an unbuilt checkout skips these; in CI (where npm test builds first) they fail.
const unbuilt = !existsSync(DIST) && process.env.CI !== 'true' && 'dist/ not built (npm run build)'

describe('the build', () => {
  it('rewrites relative .ts, .tsx and .mts specifiers in declarations to the emitted .js and .mjs', () => {
    const text = [
      "import { a } from './x.ts';",
      "export * from '../y/z.tsx';",
      'export type Q = typeof import("./w.mts");',
      "import type { B } from 'pkg.ts';",
      "import { c } from 'node:fs';",
      '/** see core/front.ts */',
    ].join('\n')
    assert.equal(
      rewriteDeclarationSpecifiers(text),
      [
        "import { a } from './x.js';",
        "export * from '../y/z.js';",
        'export type Q = typeof import("./w.mjs");',
        "import type { B } from 'pkg.ts';",
        "import { c } from 'node:fs';",
        '/** see core/front.ts */',
      ].join('\n'),
    )
  })

  it('emits JavaScript, declarations and maps for every module under src/, importing no .ts file', { skip: unbuilt }, () => {
    const sources = walk(join(ROOT, 'src')).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    assert.ok(sources.length > 30)
    for (const source of sources) {
      const base = join(DIST, source.slice(join(ROOT, 'src').length + 1).replace(/\.ts$/, ''))
      for (const ext of ['.js', '.js.map', '.d.ts', '.d.ts.map']) assert.ok(existsSync(base + ext), `${base}${ext} is missing: is dist/ stale?`)
      for (const ext of ['.js', '.d.ts']) {
        assert.doesNotMatch(readFileSync(base + ext, 'utf8'), /(?:from|import)\s*\(?\s*['"]\.{1,2}\/[^'"]*\.tsx?['"]/, `${base}${ext} imports a .ts file`)
      }
    }
  })

  it('puts the demo page, its stylesheet and its prebuilt browser bundle next to the compiled handler', { skip: unbuilt }, () => {
    for (const file of ['index.html', 'style.css', 'app.bundle.js']) assert.ok(existsSync(join(DIST, 'demo', file)), `dist/demo/${file} is missing`)
    const bundle = readFileSync(join(DIST, 'demo', 'app.bundle.js'), 'utf8')
    // One self-contained script: the browser cannot follow imports into the package.
    assert.doesNotMatch(bundle, /\bfrom\s*['"]\.{0,2}\//)
  })
})
