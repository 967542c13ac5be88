/**
 * Every subpath in package.json "exports" resolves through the package's own name (so to
 * the built dist/: `npm test` builds first) and exports something.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'

type ExportEntry = string | { types: string; import: string; default: string }
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; exports: Record<string, ExportEntry> }

describe('package exports', () => {
  for (const [subpath, entry] of Object.entries(pkg.exports)) {
    if (typeof entry === 'string') continue // ./package.json
    const file = entry.import
    const specifier = subpath === '.' ? pkg.name : `${pkg.name}/${subpath.slice(2)}`
    it(`${specifier} loads ${file} and has named exports`, async () => {
      const mod = (await import(specifier)) as Record<string, unknown>
      assert.ok(Object.keys(mod).length > 0)
      assert.ok(!('default' in mod) || Object.keys(mod).length > 1, 'named exports, not only a default')
    })
  }

  it('every name the README and docs import from the package is exported there', async () => {
    const docs = ['README.md', 'docs/integrations.md'].map((f) => readFileSync(new URL(`../${f}`, import.meta.url), 'utf8')).join('\n')
    let checked = 0
    for (const m of docs.matchAll(/import \{([^}]+)\} from '(wsds(?:\/[a-z/-]+)?)'/g)) {
      const mod = (await import(m[2]!)) as Record<string, unknown>
      for (const raw of m[1]!.split(',')) {
        const name = raw.trim()
        if (name === '' || name.startsWith('type ')) continue
        checked++
        assert.ok(name in mod, `${m[2]} has no export ${name}`)
      }
    }
    assert.ok(checked >= 5)
  })

  it('names in the README and docs only subpaths that exist', () => {
    const docs = ['README.md', 'docs/integrations.md'].map((f) => readFileSync(new URL(`../${f}`, import.meta.url), 'utf8')).join('\n')
    const named = new Set([...docs.matchAll(/from '(wsds(?:\/[a-z/-]+)?)'/g)].map((m) => m[1]!))
    assert.ok(named.size > 0)
    for (const name of named) {
      const sub = name === 'wsds' ? '.' : `./${name.slice(5)}`
      assert.ok(sub in pkg.exports, `${name} is documented but not exported`)
    }
  })
})
