#!/usr/bin/env node
// The `wsds` command: runs the compiled CLI (dist/, built by `npm run build`). In a checkout
// of the repository that has not been built yet, it runs the TypeScript sources through tsx
// (a devDependency) instead, so `node bin/wsds.js ...` works there too.
import { existsSync } from 'node:fs'

const compiled = new URL('../dist/cli/main.js', import.meta.url)
const sources = new URL('../src/cli/main.ts', import.meta.url)

if (existsSync(compiled)) {
  await import(compiled.href)
} else if (existsSync(sources)) {
  let register
  try {
    ;({ register } = await import('tsx/esm/api'))
  } catch {
    process.stderr.write('wsds: dist/ is missing: run `npm run build` (or `npm install`, which builds it)\n')
    process.exit(2)
  }
  register()
  await import(sources.href)
} else {
  process.stderr.write('wsds: dist/cli/main.js is missing from this installation: reinstall the wsds package\n')
  process.exit(2)
}
