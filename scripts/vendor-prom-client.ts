/**
 * Vendors prom-client into dist/ (docs/packaging.md, "Vendored code"). The package's
 * `/metrics` runs on prom-client's Registry, Counter, Gauge and Histogram, but prom-client
 * is a devDependency: its index loads every part (Summary with tdigest, the default metrics
 * with @opentelemetry/api, Pushgateway, cluster), about 4.7 MB that an app's install budget
 * has no room for. esbuild bundles just those four classes, from the lib/ files that define
 * them, into one ES module; src/server/prom.ts is the only module importing prom-client,
 * and its compiled form is pointed at the bundle.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { builtinModules, createRequire } from 'node:module'
import { join } from 'node:path'

/** The classes src/server/prom.ts exports, each the `module.exports` of a prom-client lib/ file. */
export const VENDORED_CLASSES = { Registry: 'registry', Counter: 'counter', Gauge: 'gauge', Histogram: 'histogram' } as const

/** Where the bundle goes, relative to dist/. */
export const VENDOR_DIR = join('server', 'vendor')
export const VENDOR_FILE = 'prom-client.js'
/** The module whose `'prom-client'` specifier is pointed at the bundle, relative to dist/. */
const IMPORTER = join('server', 'prom')
const SPECIFIER = /(from\s*['"])prom-client(['"])/g

export interface VendorResult {
  version: string
  bytes: number
}

/**
 * Bundles the classes into dist/server/vendor/prom-client.js with prom-client's licence
 * (Apache-2.0; it has no NOTICE file) and type declarations next to it, and rewrites the
 * compiled server/prom.js and .d.ts to import it. Throws when the compiled module does not
 * import prom-client exactly once, or when the bundle would load anything but Node built-ins.
 */
export async function vendorPromClient(root: string, dist: string): Promise<VendorResult> {
  const require = createRequire(join(root, 'package.json'))
  const pkgDir = join(require.resolve('prom-client/package.json'), '..')
  const { version, license } = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string; license: string }
  const esbuild = await import('esbuild')
  const entry = Object.entries(VENDORED_CLASSES)
    .map(([name, file]) => `export { default as ${name} } from 'prom-client/lib/${file}.js'`)
    .join('\n')
  const header = [
    `/*! prom-client ${version} (${license}, https://github.com/siimon/prom-client): lib/{${Object.values(VENDORED_CLASSES).join(',')}}.js`,
    ' * and what they require, bundled unmodified by scripts/vendor-prom-client.ts; licence in prom-client.LICENSE. */',
  ].join('\n')
  const bundle = await esbuild.build({
    stdin: { contents: entry, resolveDir: root, sourcefile: 'prom-client-vendor.js', loader: 'js' },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    logLevel: 'silent',
    legalComments: 'none',
    // prom-client is CommonJS and requires node's `util`: an ES module has no `require`.
    banner: { js: `${header}\nimport { createRequire as __vendorCreateRequire } from 'node:module';\nconst require = __vendorCreateRequire(import.meta.url);` },
  })
  const js = bundle.outputFiles[0]?.text
  if (js === undefined) throw new Error('esbuild produced no prom-client bundle')
  const builtins = new Set(builtinModules)
  const required = [...js.matchAll(/__require\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1]!)
  const foreign = required.filter((name) => !builtins.has(name.replace(/^node:/, '')))
  if (foreign.length > 0) throw new Error(`the prom-client bundle would require ${foreign.join(', ')} at run time`)

  const dir = join(dist, VENDOR_DIR)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, VENDOR_FILE), js)
  copyFileSync(join(pkgDir, 'LICENSE'), join(dir, 'prom-client.LICENSE'))
  const types = readFileSync(join(pkgDir, 'index.d.ts'), 'utf8')
  writeFileSync(
    join(dir, 'prom-client.d.ts'),
    `// prom-client ${version}'s index.d.ts, unmodified. ${VENDOR_FILE} holds only ${Object.keys(VENDORED_CLASSES).join(', ')},\n// the names ../prom.d.ts re-exports.\n${types}`,
  )
  for (const ext of ['.js', '.d.ts']) {
    const file = join(dist, IMPORTER + ext)
    const text = readFileSync(file, 'utf8')
    const hits = text.match(SPECIFIER)?.length ?? 0
    if (hits !== 1) throw new Error(`${file} imports 'prom-client' ${hits} times; expected once (src/server/prom.ts)`)
    writeFileSync(file, text.replace(SPECIFIER, `$1./vendor/${VENDOR_FILE}$2`))
  }
  return { version, bytes: Buffer.byteLength(js) }
}
