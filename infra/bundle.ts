/**
 * Bundles each Lambda entry (src/aws/lambda/<name>.ts) with esbuild into
 * dist/aws/<name>.cjs: CommonJS (the package is "type": "module", so the extension says
 * CJS), target node22 (the nodejs22.x runtime), the pinned AWS SDK included rather than the
 * runtime's, so what runs on Lambda is what the tests ran. Handler: `<name>.handler`.
 */
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { build } from 'esbuild'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

export async function bundleLambdas(outdir = join(ROOT, 'dist/aws')): Promise<{ outdir: string; files: Record<string, number> }> {
  const dir = join(ROOT, 'src/aws/lambda')
  const entryPoints = readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => join(dir, f))
  const out = await build({
    entryPoints,
    outdir,
    outExtension: { '.js': '.cjs' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node22',
    minify: true,
    sourcemap: 'linked',
    metafile: true,
    logLevel: 'warning',
    legalComments: 'none',
  })
  const files: Record<string, number> = {}
  for (const [file, info] of Object.entries(out.metafile.outputs)) if (file.endsWith('.cjs')) files[file.split('/').pop()!] = info.bytes
  return { outdir, files }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { outdir, files } = await bundleLambdas()
  for (const [file, bytes] of Object.entries(files)) console.log(`${outdir}/${file}  ${(bytes / 1024).toFixed(0)} KiB`)
}
