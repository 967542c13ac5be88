/**
 * `npm run build`: src/ -> dist/, the JavaScript the package ships (docs/packaging.md).
 *
 * 1. tsc (tsconfig.build.json) compiles every file under src/ to ESM .js, .d.ts, and their
 *    maps; a module someone adds under src/ is picked up without touching this file.
 *    `rewriteRelativeImportExtensions` turns the sources' `./x.ts` into `./x.js` in the .js.
 * 2. The .d.ts keep `./x.ts`, which a consumer's TypeScript only follows with
 *    allowImportingTsExtensions: they are rewritten to `./x.js` (same length, so the
 *    declaration maps stay exact).
 * 3. Files under src/ that are not TypeScript (the demo page's HTML and CSS) are copied.
 * 4. What the sources build at run time is built now: the demo app's browser bundle, since
 *    esbuild is not a dependency of the installed package.
 * 5. prom-client, a devDependency, is vendored: the four classes /metrics uses, bundled into
 *    dist/server/vendor/ with their licence, and the compiled server/prom.js imports that
 *    bundle (scripts/vendor-prom-client.ts).
 */
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEMO_BUNDLE_FILE, bundleDemoApp } from '../src/demo/handler.ts'
import { vendorPromClient } from './vendor-prom-client.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const SRC = join(ROOT, 'src')
const DIST = join(ROOT, 'dist')

/** Every file under dir, recursively, as absolute paths. */
export function walk(dir: string): string[] {
  let entries
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  return entries.flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? walk(path) : [path]
  })
}

// `from './x.ts'`, `import('./x.ts')`, `export * from '../x.ts'` (and .tsx, .mts): relative
// specifiers only, rewritten as rewriteRelativeImportExtensions does in the JavaScript.
const TS_SPECIFIER = /((?:from|import)\s*\(?\s*['"])(\.{1,2}\/[^'"]*?)\.(ts|tsx|mts)(['"])/g

export function rewriteDeclarationSpecifiers(text: string): string {
  return text.replace(TS_SPECIFIER, (_, head: string, path: string, ext: string, quote: string) => `${head}${path}.${ext === 'mts' ? 'mjs' : 'js'}${quote}`)
}

function compile(): void {
  const tsc = join(ROOT, 'node_modules', '.bin', 'tsc')
  const run = spawnSync(tsc, ['-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' })
  if (run.status !== 0) throw new Error(`tsc failed (exit ${run.status ?? run.signal})`)
}

export async function build(): Promise<{ files: number }> {
  // Everything but the Lambda bundles (dist/aws/*.cjs, infra/bundle.ts) goes first,
  // so a module deleted from src/ does not linger in the package.
  const lambdaBundle = (file: string) => file.startsWith(join(DIST, 'aws') + '/') && /\.cjs(\.map)?$/.test(file)
  for (const file of walk(DIST).filter((f) => !lambdaBundle(f))) rmSync(file)
  compile()
  for (const file of walk(DIST).filter((f) => f.endsWith('.d.ts'))) {
    const text = readFileSync(file, 'utf8')
    const fixed = rewriteDeclarationSpecifiers(text)
    if (fixed !== text) writeFileSync(file, fixed)
  }
  for (const file of walk(SRC).filter((f) => !/\.(m|c)?tsx?$/.test(f))) {
    const target = join(DIST, relative(SRC, file))
    mkdirSync(dirname(target), { recursive: true })
    cpSync(file, target)
  }
  writeFileSync(join(DIST, 'demo', DEMO_BUNDLE_FILE), await bundleDemoApp(join(SRC, 'demo', 'app.ts')))
  await vendorPromClient(ROOT, DIST)
  return { files: walk(DIST).length }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { files } = await build()
  process.stdout.write(`dist/: ${files} files\n`)
}
