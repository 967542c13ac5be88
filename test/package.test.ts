/**
 * The npm package as a user gets it: `npm pack`, then the tarball installed into fresh
 * projects outside the repository (from the local npm cache where it can: --prefer-offline).
 * One pack and one app directory serve every test; packages are added to the app only after
 * the tests that need their absence (its size, the missing-ioredis message). What these
 * check is described in docs/packaging.md.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { after, before, describe, it } from 'node:test'
import { startRedisServer, type RedisServer } from './helpers/redis.ts'
import { requireBinary } from './helpers/services.ts'
import { TEST_ORIGIN } from './helpers/server.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string
  exports: Record<string, unknown>
  dependencies: Record<string, string>
}
const redisBin = requireBinary('redis-server')

/** Budgets from docs/packaging.md. */
const INSTALL_BUDGET_BYTES = 10 * 1024 * 1024
const SDK_BUDGET_BYTES = 5 * 1024

/** The version this repository installed, so the app's install hits the npm cache. */
const installed = (name: string): string =>
  (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version

/**
 * The environment of a child npm: without the npm_* variables `npm test` sets, which would
 * point it back at this repository.
 */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.toLowerCase().startsWith('npm_')) env[k] = v
  return { ...env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', ...extra }
}

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to its end (within timeoutMs, then SIGKILL). */
function run(command: string, args: string[], options: { cwd: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${command} ${args.join(' ')} did not finish within ${options.timeoutMs} ms\n${stdout}\n${stderr}`))
    }, options.timeoutMs ?? 120_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

async function ok(command: string, args: string[], options: { cwd: string; timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<string> {
  const result = await run(command, args, options)
  assert.equal(result.code, 0, `${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`)
  return result.stdout
}

/** Sum of file sizes under dir (what the files weigh, not the blocks they occupy: see du). */
function treeBytes(dir: string): number {
  let total = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) total += treeBytes(path)
    else if (entry.isFile()) total += statSync(path).size
  }
  return total
}

const npmInstall = (cwd: string, specs: string[]) =>
  ok('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...specs], { cwd, timeoutMs: 300_000 })

/** A long-running child in its own process group, stopped as a whole (npx runs node under it). */
interface Service {
  child: ChildProcess
  output(): string
  /** Resolves with the first match of pattern in the output. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>
  stop(): Promise<void>
}

function startService(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Service {
  const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const listeners = new Set<() => void>()
  const onData = (c: Buffer) => {
    out += c.toString()
    for (const l of listeners) l()
  }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    child,
    output: () => out,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(out)
          if (m) done(() => resolve(m))
        }
        const timer = setTimeout(() => done(() => reject(new Error(`${command} ${args.join(' ')}: no ${pattern} within ${timeoutMs} ms:\n${out}`))), timeoutMs)
        const onExit = () => done(() => reject(new Error(`${command} ${args.join(' ')} exited (${child.exitCode}) before ${pattern}:\n${out}`)))
        const done = (settle: () => void) => {
          clearTimeout(timer)
          listeners.delete(check)
          child.off('exit', onExit)
          settle()
        }
        listeners.add(check)
        child.once('exit', onExit)
        check()
      })
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return
      try {
        process.kill(-child.pid!, 'SIGTERM')
      } catch {}
      const killer = setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL')
        } catch {}
      }, 5000)
      await exited
      clearTimeout(killer)
    },
  }
}

describe('the npm package installed from its tarball', { skip: redisBin.skip }, () => {
  let work: string
  let tarball: string
  let app: string
  let packed: { entryCount: number; size: number; unpackedSize: number; files: Array<{ path: string }> }

  before(
    async () => {
      work = mkdtempSync(join(tmpdir(), 'wsds-package-'))
      // npm pack runs `prepare`, so the tarball holds a fresh build of the current sources.
      const out = await ok('npm', ['pack', '--json', '--pack-destination', work, '--loglevel=error'], { cwd: ROOT, timeoutMs: 300_000 })
      packed = (JSON.parse(out.slice(out.indexOf('['))) as (typeof packed & { filename: string })[])[0]!
      tarball = join(work, (packed as typeof packed & { filename: string }).filename)
      console.log(`tarball: ${packed.entryCount} files, ${packed.size} bytes packed, ${packed.unpackedSize} bytes unpacked`)
      app = join(work, 'app')
      await ok('mkdir', ['-p', app], { cwd: work })
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
      await npmInstall(app, [tarball, `express@${installed('express')}`])
    },
    { timeout: 600_000 },
  )

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true })
  })

  it('ships compiled JavaScript with types, the deploy configs, README and LICENSE, and no tests, bench, local or infra', () => {
    const files = packed.files.map((f) => f.path)
    for (const required of ['README.md', 'LICENSE', 'package.json', 'bin/wsds.js', 'dist/demo/app.bundle.js', 'deploy/aws/template.json']) {
      assert.ok(files.includes(required), `${required} is missing from the tarball`)
    }
    for (const entry of Object.values(pkg.exports)) {
      if (typeof entry === 'string') continue
      const { types, import: js } = entry as { types: string; import: string }
      assert.ok(files.includes(types.slice(2)), `${types} is missing from the tarball`)
      assert.ok(files.includes(js.slice(2)), `${js} is missing from the tarball`)
    }
    for (const dir of ['deploy/nginx/', 'deploy/caddy/', 'deploy/traefik/', 'deploy/grafana/']) {
      assert.ok(files.some((f) => f.startsWith(dir)), `nothing from ${dir} in the tarball`)
    }
    const stray = files.filter((f) => /^(test|bench|local|infra|scripts|\.ci)\//.test(f) || f.startsWith('dist/aws/') || f.startsWith('src/aws/'))
    assert.deepEqual(stray, [])
    // No TypeScript source and no declaration map ships (the install budget, docs/packaging.md);
    // nothing at run time imports a .ts file.
    assert.deepEqual(files.filter((f) => f.startsWith('src/') || f.endsWith('.d.ts.map')), [])
    const js = files.filter((f) => f.startsWith('dist/') && f.endsWith('.js'))
    assert.ok(js.length > 20)
    for (const file of js) {
      const text = readFileSync(join(app, 'node_modules', 'wsds', file), 'utf8')
      assert.doesNotMatch(text, /from ['"]\.{1,2}\/[^'"]*\.ts['"]/, `${file} imports a .ts file`)
    }
  })

  it('installs into an empty Express app in at most 10 MB, without ioredis, the AWS SDK, esbuild or tsx', async () => {
    const modules = join(app, 'node_modules')
    const bytes = treeBytes(modules)
    // Disk usage as `du` counts it (whole blocks), the measure of the 57 MB this replaced.
    const disk = Number((await ok('du', ['-sk', modules], { cwd: app })).split('\t')[0]) * 1024
    const mb = (n: number) => (n / 1024 / 1024).toFixed(2)
    console.log(`npm install wsds express: node_modules uses ${mb(disk)} MB on disk (du), ${mb(bytes)} MB of file contents`)
    assert.ok(disk <= INSTALL_BUDGET_BYTES, `node_modules uses ${disk} bytes on disk, over ${INSTALL_BUDGET_BYTES}`)
    const top = readdirSync(modules)
    for (const absent of ['ioredis', '@aws-sdk', 'esbuild', 'tsx', 'pino-pretty', 'typescript', 'prom-client']) assert.ok(!top.includes(absent), `${absent} was installed`)
  })

  it('wsds serve with a Redis store but without ioredis says to install ioredis and exits 2', async () => {
    const result = await run('npx', ['--no', 'wsds', 'serve', '--port', '0', '--store', 'redis://127.0.0.1:1/0'], { cwd: app, timeoutMs: 60_000 })
    assert.equal(result.code, 2, result.stdout + result.stderr)
    assert.match(result.stderr, /install ioredis to use a Redis store/)
  })

  it('the Express middleware with a redis storeUrl but without ioredis rejects ready() naming ioredis', async () => {
    writeFileSync(
      join(app, 'no-ioredis.mjs'),
      `import { wsds } from 'wsds/express'
const guard = wsds({ storeUrl: 'redis://127.0.0.1:1/0' })
try { await guard.ready(); console.log('opened') } catch (err) { console.log(err.code + ': ' + err.message) }
await guard.close().catch(() => {})
`,
    )
    const out = await ok(process.execPath, ['no-ioredis.mjs'], { cwd: app, timeoutMs: 60_000 })
    assert.match(out, /ERR_CONFIG: install ioredis to use a Redis store/)
  })

  it('a CommonJS app requires wsds/express and wsds/stores/memory', async () => {
    writeFileSync(
      join(app, 'app.cjs'),
      `const { wsds } = require('wsds/express')
const { createMemoryStore } = require('wsds/stores/memory')
const { WsdsError } = require('wsds/errors')
const middleware = wsds({ store: createMemoryStore() })
console.log(JSON.stringify({ wsds: typeof wsds, middleware: typeof middleware, error: typeof WsdsError }))
middleware.close()
`,
    )
    const out = await ok(process.execPath, ['app.cjs'], { cwd: app, timeoutMs: 60_000 })
    assert.deepEqual(JSON.parse(out.trim().split('\n').pop()!), { wsds: 'function', middleware: 'function', error: 'function' })
  })

  it('esbuild bundles wsds/client for the browser with no Node built-in, within 5 KB minified and gzipped', async () => {
    const { build } = await import('esbuild')
    const bundle = (splitting: boolean) =>
      build({
        entryPoints: [join(app, 'sdk-entry.js')],
        absWorkingDir: app,
        bundle: true,
        platform: 'browser',
        format: 'esm',
        minify: true,
        write: false,
        metafile: true,
        logLevel: 'silent',
        ...(splitting ? { splitting: true, outdir: join(app, 'sdk-out') } : {}),
      })
    writeFileSync(join(app, 'sdk-entry.js'), "export * from 'wsds/client'\n")
    const split = await bundle(true)
    const inputs = Object.keys(split.metafile.inputs)
    // platform 'browser' fails the build on any node:* import; this also catches a dependency.
    for (const input of inputs) assert.match(input, /^(sdk-entry\.js|node_modules\/wsds\/dist\/(client|core)\/)/, `the browser bundle pulls in ${input}`)
    // As Vite and Rollup split by default: the entry is what a page loads to verify; the
    // proof-of-work solver is a chunk fetched only when a challenge asks for work.
    const entry = split.outputFiles.find((f) => f.path.endsWith('sdk-entry.js'))!
    const gzipped = gzipSync(entry.contents, { level: 9 }).length
    const chunks = split.outputFiles.filter((f) => f !== entry).map((f) => gzipSync(f.contents, { level: 9 }).length)
    const whole = gzipSync((await bundle(false)).outputFiles[0]!.contents, { level: 9 }).length
    console.log(`wsds/client for the browser: entry ${entry.contents.length} bytes minified, ${gzipped} bytes minified and gzipped; on-demand chunks ${chunks.join(', ')} bytes gzipped; one file without code splitting ${whole} bytes gzipped`)
    assert.equal(chunks.length, 1, 'the proof-of-work solver is the one on-demand chunk')
    assert.ok(gzipped <= SDK_BUDGET_BYTES, `the SDK is ${gzipped} bytes gzipped, over ${SDK_BUDGET_BYTES}`)
  })

  it('publint and arethetypeswrong find no problem in the tarball beyond the accepted ones in docs/packaging.md', async () => {
    const bin = (name: string) => join(ROOT, 'node_modules', '.bin', name)
    const lint = await run(bin('publint'), ['run', tarball, '--level', 'warning', '--strict'], { cwd: work, timeoutMs: 120_000 })
    assert.equal(lint.code, 0, `publint:\n${lint.stdout}\n${lint.stderr}`)
    // node16 profile: node10 resolution (no "exports" support) is gone from TypeScript 7;
    // require() of ESM is accepted because Node 20.19+ and 22.12+ load it (tested above).
    const attw = await run(bin('attw'), [tarball, '--profile', 'node16', '--ignore-rules', 'cjs-resolves-to-esm', '--format', 'table-flipped'], {
      cwd: work,
      timeoutMs: 120_000,
    })
    assert.equal(attw.code, 0, `attw:\n${attw.stdout}\n${attw.stderr}`)
  })

  describe('with ioredis, the optional peers and the typings added to the app', () => {
    let redis: RedisServer
    const services: Service[] = []

    before(
      async () => {
        redis = await startRedisServer(redisBin.path!)
        const extras = ['ioredis', '@aws-sdk/client-dynamodb', 'fastify', 'hono', 'react', 'parse5', 'yaml', '@types/node', '@types/express', '@types/react']
        await npmInstall(app, extras.map((name) => `${name}@${installed(name)}`))
      },
      { timeout: 600_000 },
    )

    after(async () => {
      for (const service of services) await service.stop()
      await redis?.stop()
    })

    it('a JavaScript Express app admits a verified id and refuses an unknown one, against npx wsds serve from the same tarball', async () => {
      const keys = await ok('npx', ['--no', 'wsds', 'keys', 'generate', '--id', 'package-test'], { cwd: app, timeoutMs: 60_000 })
      writeFileSync(join(app, 'keys.json'), keys)
      const keySet = JSON.parse(keys) as { id: string; keys: string[] }
      const env = childEnv({
        PORT: '0',
        HOST: '127.0.0.1',
        WSDS_STORE: redis.url,
        WSDS_KEYS_FILE: join(app, 'keys.json'),
        WSDS_ALLOWED_ORIGINS: TEST_ORIGIN,
        WSDS_LOG_LEVEL: 'info',
        // With a keys file the demo is off unless asked for; asked for, it runs on a set of its own.
        WSDS_DEMO: 'on',
      })
      const gateway = startService('npx', ['--no', 'wsds', 'serve'], app, env)
      services.push(gateway)
      const url = (await gateway.waitFor(/"event":"listening","url":"(http:\/\/[^"]+)"/, 60_000))[1]!

      // The demo's browser bundle was built into the package: the installed gateway has no esbuild.
      const demo = await fetch(`${url}/demo/app.js`)
      assert.equal(demo.status, 200)
      assert.match(demo.headers.get('content-type') ?? '', /javascript/)
      assert.ok((await demo.text()).length > 1000)

      writeFileSync(
        join(app, 'server.js'),
        `import express from 'express'
import { wsds } from 'wsds/express'

const app = express()
const guard = wsds({ storeUrl: process.env.WSDS_STORE })
app.use('/api', guard)
app.get('/api/hello', (req, res) => res.json({ connectionId: req.wsds.connectionId }))
await guard.ready()
const server = app.listen(0, '127.0.0.1', () => console.log('app listening on ' + server.address().port))
`,
      )
      const api = startService(process.execPath, ['server.js'], app, childEnv({ WSDS_STORE: redis.url }))
      services.push(api)
      const port = (await api.waitFor(/app listening on (\d+)/, 60_000))[1]!

      const { client, connectionId } = await verifiedHandshake(`${url.replace('http', 'ws')}/wsds`, {
        origin: TEST_ORIGIN,
        keys: keySet.keys,
        keySet: keySet.id,
      })
      try {
        const admitted = await fetch(`http://127.0.0.1:${port}/api/hello`, { headers: { connectionId } })
        assert.equal(admitted.status, 200)
        assert.deepEqual(await admitted.json(), { connectionId })
        const unknown = await fetch(`http://127.0.0.1:${port}/api/hello`, { headers: { connectionId: 'A'.repeat(connectionId.length) } })
        assert.equal(unknown.status, 401)
        await unknown.body?.cancel()
        const missing = await fetch(`http://127.0.0.1:${port}/api/hello`)
        assert.equal(missing.status, 401)
        await missing.body?.cancel()
        // /metrics runs on the prom-client bundled into dist/ (docs/packaging.md): the app has none installed.
        const metrics = await fetch(`${url}/metrics`)
        assert.equal(metrics.status, 200)
        assert.match(await metrics.text(), /^wsds_handshake_duration_seconds_count\{node="[^"]+"\} 1$/m)
      } finally {
        client.ws.close()
        await client.closed
      }
    })

    it('a TypeScript project importing every subpath type-checks under moduleResolution node16 and bundler, and CommonJS under nodenext', async () => {
      const subpaths = Object.keys(pkg.exports).filter((s) => s !== './package.json')
      const specifiers = subpaths.map((s) => (s === '.' ? 'wsds' : `wsds/${s.slice(2)}`))
      const lines = [
        ...specifiers.map((s, i) => `import * as m${i} from '${s}'`),
        `import { wsds } from 'wsds/express'`,
        `import { createMemoryStore } from 'wsds/stores/memory'`,
        `import { connect, type WsdsSession } from 'wsds/client'`,
        `import { isWsdsError, type WsdsErrorCode } from 'wsds/errors'`,
        `import type { RequestHandler } from 'express'`,
        '',
        `export const modules = [${specifiers.map((_, i) => `m${i}`).join(', ')}]`,
        `export const middleware: RequestHandler = wsds({ store: createMemoryStore(), mode: 'monitor' })`,
        `// @ts-expect-error mode is 'enforce' | 'monitor': the types are real, not any`,
        `wsds({ store: createMemoryStore(), mode: 'block' })`,
        `export function open(): WsdsSession {`,
        `  return connect({ url: '/wsds', keys: ['k'] })`,
        `}`,
        `export function code(err: unknown): WsdsErrorCode | undefined {`,
        `  return isWsdsError(err) ? err.code : undefined`,
        `}`,
        '',
      ]
      writeFileSync(join(app, 'check.ts'), lines.join('\n'))
      // A CommonJS TypeScript file: nodenext knows Node's require() loads ES modules (docs/packaging.md).
      writeFileSync(
        join(app, 'check-cjs.cts'),
        `import { wsds } from 'wsds/express'\nimport { createMemoryStore } from 'wsds/stores/memory'\nexport const middleware = wsds({ store: createMemoryStore() })\n`,
      )
      const tsc = join(ROOT, 'node_modules', '.bin', 'tsc')
      const common = { strict: true, noEmit: true, skipLibCheck: false, target: 'ES2022', lib: ['ES2022', 'DOM'], types: ['node'] }
      const configs = {
        node16: { options: { module: 'node16', moduleResolution: 'node16' }, files: ['check.ts'] },
        bundler: { options: { module: 'esnext', moduleResolution: 'bundler' }, files: ['check.ts'] },
        'commonjs-nodenext': { options: { module: 'nodenext', moduleResolution: 'nodenext' }, files: ['check-cjs.cts'] },
      }
      for (const [name, { options, files }] of Object.entries(configs)) {
        const config = join(app, `tsconfig.${name}.json`)
        writeFileSync(config, JSON.stringify({ compilerOptions: { ...common, ...options }, files }))
        const result = await run(tsc, ['-p', config], { cwd: app, timeoutMs: 180_000 })
        assert.equal(result.code, 0, `tsc (${name}):\n${result.stdout}\n${result.stderr}`)
      }
    })
  })
})
