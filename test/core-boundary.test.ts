/**
 * The core stays pure (STYLE.md "Core/adapter boundary"): nothing under src/core imports a
 * package or a Node module, and the browser SDK imports only core's protocol, errors,
 * program interpreter and SHA-256.
 * tsconfig.core.json compiles both without Node types; this catches what types cannot
 * (a dynamic import, a package with its own types).
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'

const root = new URL('../src/', import.meta.url).pathname

function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? m[2]!)
}

const filesIn = (dir: string) => readdirSync(join(root, dir)).filter((f) => f.endsWith('.ts')).map((f) => join(root, dir, f))

describe('core/adapter boundary', () => {
  it('src/core imports only other core modules', () => {
    const files = filesIn('core')
    assert.ok(files.length >= 10)
    let seen = 0
    for (const file of files) {
      for (const spec of specifiers(file)) {
        seen++
        assert.ok(spec.startsWith('./') && !spec.includes('/..'), `${file} imports ${spec}`)
      }
    }
    assert.ok(seen > 20, 'the import scanner found the imports')
  })

  it('the browser SDK imports only core protocol, errors, the program interpreter and SHA-256', () => {
    for (const file of filesIn('client')) {
      for (const spec of specifiers(file)) {
        assert.ok(['../core/protocol.ts', '../core/errors.ts', '../core/program.ts', '../core/sha256.ts'].includes(spec) || spec.startsWith('./'), `${file} imports ${spec}`)
      }
    }
  })

  it('uses no eval or Function constructor on the server side', () => {
    for (const dir of ['core', 'engine', 'gateway', 'proxy', 'server', 'stores', 'middleware', 'aws']) {
      for (const file of filesIn(dir)) {
        const text = readFileSync(file, 'utf8').replace(/\/\/.*$|\/\*[\s\S]*?\*\//gm, '')
        assert.ok(!/\beval\s*\(|new\s+Function\s*\(|\bvm\.run|from\s+['"]node:vm['"]/.test(text), `${file} evaluates code`)
      }
    }
  })
})
