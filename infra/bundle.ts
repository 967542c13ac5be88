/**
 * Bundles each Lambda entry (src/aws/lambda/<name>.ts) with esbuild into
 * dist/aws/<name>.cjs: CommonJS (the package is "type": "module", so the extension says
 * CJS), target node22 (the nodejs22.x runtime), the pinned AWS SDK included rather than the
 * runtime's, so what runs on Lambda is what the tests ran. Handler: `<name>.handler`.
 *
 * It also writes dist/aws/lambda-<first 16 hex of SHA-256 of the bundles>.zip, the S3 object
 * the committed template deploys (LambdaCodeKey): new code, new key, so CloudFormation sees a
 * change and updates the functions. The zip is deterministic (fixed timestamps, sorted).
 *
 * With WSDS_POLICY_FILE set to a path, the rules file is validated (the bundle fails naming
 * the rule and field, as `wsds serve` would) and added as policy.json: YAML is converted here,
 * so the functions never need the `yaml` package. `ssm:` sources are read at run time instead.
 */
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { crc32, deflateRawSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'
import { join } from 'node:path'
import { build } from 'esbuild'
import { decodePolicyText, readPolicyFile } from '../src/server/policy-file.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** A zip of `entries` (name -> bytes), deflated, with a fixed 1980-01-01 timestamp: same input, same bytes. */
export function zipFiles(entries: [string, Buffer][]): Buffer {
  const locals: Buffer[] = []
  const centrals: Buffer[] = []
  let offset = 0
  for (const [name, data] of entries) {
    const nameBytes = Buffer.from(name, 'utf8')
    const packed = deflateRawSync(data, { level: 9 })
    const crc = crc32(data)
    const local = Buffer.alloc(30)
    local.writeUInt32LE(0x04034b50, 0)
    local.writeUInt16LE(20, 4) // version needed
    local.writeUInt16LE(0x0800, 6) // UTF-8 names
    local.writeUInt16LE(8, 8) // deflate
    local.writeUInt16LE(0, 10) // time
    local.writeUInt16LE(0x21, 12) // date: 1980-01-01
    local.writeUInt32LE(crc, 14)
    local.writeUInt32LE(packed.length, 18)
    local.writeUInt32LE(data.length, 22)
    local.writeUInt16LE(nameBytes.length, 26)
    local.writeUInt16LE(0, 28)
    const central = Buffer.alloc(46)
    central.writeUInt32LE(0x02014b50, 0)
    central.writeUInt16LE(0x0314, 4) // made by: Unix, 2.0
    local.copy(central, 6, 4, 30) // version needed .. name length, as in the local header
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38) // regular file, rw-r--r--
    central.writeUInt32LE(offset, 42)
    locals.push(local, nameBytes, packed)
    centrals.push(central, nameBytes)
    offset += local.length + nameBytes.length + packed.length
  }
  const dir = Buffer.concat(centrals)
  const end = Buffer.alloc(22)
  end.writeUInt32LE(0x06054b50, 0)
  end.writeUInt16LE(entries.length, 8)
  end.writeUInt16LE(entries.length, 10)
  end.writeUInt32LE(dir.length, 12)
  end.writeUInt32LE(offset, 16)
  return Buffer.concat([...locals, dir, end])
}

/** The rules file as the authorizer reads it from the zip (infra/stack.ts BUNDLED_POLICY_PATH). */
export const POLICY_BUNDLE_NAME = 'policy.json'

export async function bundleLambdas(
  outdir = join(ROOT, 'dist/aws'),
  options: { policyFile?: string } = {},
): Promise<{ outdir: string; files: Record<string, number>; zip: string }> {
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
  const names = Object.keys(out.metafile.outputs).map((f) => f.split('/').pop()!).filter((f) => f.endsWith('.cjs') || f.endsWith('.cjs.map'))
  const policyFile = options.policyFile?.trim()
  if (policyFile && !policyFile.startsWith('ssm:')) {
    readPolicyFile(policyFile) // throws ERR_POLICY naming the rule and field
    const data = decodePolicyText(readFileSync(policyFile, 'utf8'), policyFile)
    writeFileSync(join(outdir, POLICY_BUNDLE_NAME), JSON.stringify(data) + '\n')
    names.push(POLICY_BUNDLE_NAME)
  }
  names.sort()
  const entries = names.map((name): [string, Buffer] => [name, readFileSync(join(outdir, name))])
  const hash = createHash('sha256')
  for (const [name, data] of entries) hash.update(name).update('\0').update(data).update('\0')
  const zip = join(outdir, `lambda-${hash.digest('hex').slice(0, 16)}.zip`)
  writeFileSync(zip, zipFiles(entries))
  return { outdir, files, zip }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { outdir, files, zip } = await bundleLambdas(undefined, { policyFile: process.env.WSDS_POLICY_FILE })
  for (const [file, bytes] of Object.entries(files)) console.log(`${outdir}/${file}  ${(bytes / 1024).toFixed(0)} KiB`)
  console.log(`${zip}  (upload to S3 and pass its key as LambdaCodeKey)`)
}
