/**
 * The built package's metrics: dist/server/vendor/prom-client.js (scripts/vendor-prom-client.ts)
 * is what the compiled server loads, and /metrics from dist/ lists the same families as from
 * the sources, in valid text exposition format.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
// @ts-expect-error no declaration file
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { pino } from 'pino'
import * as source from 'prom-client'
import type * as Prom from '../src/server/prom.ts'
import type * as ServerIndex from '../src/server/index.ts'
import { VENDORED_CLASSES, VENDOR_DIR, VENDOR_FILE } from '../scripts/vendor-prom-client.ts'
import { TEST_ORIGIN, startTestServer, testKeySet, type TestServer } from './helpers/server.ts'
import { verifiedHandshake } from './helpers/ws-client.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DIST = join(ROOT, 'dist')
const VENDORED = join(DIST, VENDOR_DIR, VENDOR_FILE)
// Locally an unbuilt checkout skips these; in CI (where npm test builds first) they fail.
const unbuilt = !existsSync(VENDORED) && process.env.CI !== 'true' && 'dist/ not built (npm run build)'
const distModule = <T>(path: string): Promise<T> => import(pathToFileURL(join(DIST, path)).href) as Promise<T>

interface Family {
  name: string
  help: string
  type: string
  metrics: Array<{ labels?: Record<string, string>; buckets?: Record<string, string> }>
}

// Text format 0.0.4: `# HELP name text`, `# TYPE name type`, `name{label="value",...} number`.
const HELP_OR_TYPE = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/

/** Checks every line against the text format and every sample against its family's TYPE; returns the parsed families. */
function parseStrictly(text: string): Family[] {
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = HELP_OR_TYPE.exec(line)
    if (meta) {
      if (meta[1] === 'TYPE') types.set(meta[2]!, meta[3]!)
      continue
    }
    const sample = SAMPLE.exec(line)
    assert.ok(sample, `not a sample line: ${JSON.stringify(line)}`)
    const name = sample[1]!
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '')
    assert.ok(types.has(family), `${name} has no # TYPE line before it`)
    if (family !== name) assert.equal(types.get(family), 'histogram', `${name} is a histogram series`)
    assert.match(line, /node="[^"]+"/, `${line} has no node label`)
  }
  return parsePrometheusTextFormat(text) as Family[]
}

/** name, type, help, and the label names each family's series carry. */
function shape(families: Family[]): Array<[string, string, string, string[]]> {
  return families.map((f) => [f.name, f.type, f.help, [...new Set(f.metrics.flatMap((m) => Object.keys(m.labels ?? {})))].sort()])
}

describe('the vendored prom-client in dist/', { skip: unbuilt }, () => {
  it('exports exactly Registry, Counter, Gauge and Histogram, which write the exposition with default labels', async () => {
    const vendored = await import(pathToFileURL(VENDORED).href)
    assert.deepEqual(Object.keys(vendored).sort(), Object.keys(VENDORED_CLASSES).sort())
    const registry: Prom.Registry = new vendored.Registry()
    registry.setDefaultLabels({ node: 'n1' })
    const counter: Prom.Counter = new vendored.Counter({ name: 'x_total', help: 'Things', labelNames: ['result'], registers: [registry] })
    counter.inc({ result: 'ok' }, 2)
    const histogram: Prom.Histogram = new vendored.Histogram({ name: 'h_seconds', help: 'H', buckets: [0.1, 1], registers: [registry] })
    histogram.observe(0.5)
    new vendored.Gauge({ name: 'g', help: 'G', registers: [registry], collect(this: Prom.Gauge) { this.set(7) } })
    const text = await registry.metrics()
    assert.match(text, /^x_total\{result="ok",node="n1"\} 2$/m)
    assert.match(text, /^h_seconds_bucket\{le="1",node="n1"\} 1$/m)
    assert.match(text, /^g\{node="n1"\} 7$/m)
    parseStrictly(text)
  })

  it("is the installed prom-client's own code, with its version and licence, and loads nothing but Node built-ins", () => {
    const require = createRequire(join(ROOT, 'package.json'))
    const pkg = JSON.parse(readFileSync(require.resolve('prom-client/package.json'), 'utf8')) as { version: string; license: string }
    const js = readFileSync(VENDORED, 'utf8')
    assert.ok(js.startsWith(`/*! prom-client ${pkg.version} (${pkg.license}`), 'the header names the bundled version')
    assert.equal(readFileSync(join(DIST, VENDOR_DIR, 'prom-client.LICENSE'), 'utf8'), readFileSync(join(require.resolve('prom-client/package.json'), '..', 'LICENSE'), 'utf8'))
    assert.ok(existsSync(join(DIST, VENDOR_DIR, 'prom-client.d.ts')))
    assert.deepEqual([...new Set([...js.matchAll(/__require\("([^"]+)"\)/g)].map((m) => m[1]))], ['util'])
    for (const absent of ['tdigest', '@opentelemetry', 'Pushgateway', 'class Summary']) assert.ok(!js.includes(absent), `the bundle holds ${absent}`)
    // Bundled whole: the lib/ files are in it as prom-client ships them.
    const histogramSource = readFileSync(join(require.resolve('prom-client/package.json'), '..', 'lib', 'histogram.js'), 'utf8')
    const body = histogramSource.slice(histogramSource.indexOf('function findBound'), histogramSource.indexOf('function observe('))
    assert.ok(body.length > 100 && js.includes(body.trim().split('\n')[0]!))
  })

  it('is what the compiled server/prom.js exports, not the prom-client the sources import', async () => {
    const compiled = await distModule<typeof Prom>('server/prom.js')
    const vendored = await import(pathToFileURL(VENDORED).href)
    for (const name of Object.keys(VENDORED_CLASSES) as Array<keyof typeof VENDORED_CLASSES>) {
      assert.equal(compiled[name], vendored[name], `dist/server/prom.js ${name}`)
      assert.notEqual(compiled[name], source[name], `dist/server/prom.js ${name} is not node_modules' prom-client`)
    }
    for (const file of ['server/prom.js', 'server/prom.d.ts']) {
      assert.doesNotMatch(readFileSync(join(DIST, file), 'utf8'), /from\s*['"]prom-client['"]/, `${file} still imports prom-client`)
    }
  })
})

describe('/metrics of the built server', { skip: unbuilt }, () => {
  let built: Awaited<ReturnType<typeof ServerIndex.startServer>>
  let sources: TestServer
  before(async () => {
    const dist = await distModule<typeof ServerIndex>('server/index.js')
    const base = dist.loadConfig({ PORT: '0', WSDS_ALLOWED_ORIGINS: TEST_ORIGIN, WSDS_RATE_LIMIT: 'off', WSDS_DEMO: 'off' })
    built = await dist.startServer({ ...base, keySets: [testKeySet] }, { logger: pino({ level: 'silent' }) })
    sources = await startTestServer()
  })
  after(async () => {
    await built?.close()
    await sources?.close()
  })

  /** One verified handshake and two requests, then the exposition. */
  async function session(url: string, metricsUrl: string): Promise<string> {
    const { client, connectionId } = await verifiedHandshake(`${url.replace('http', 'ws')}/wsds`, { origin: TEST_ORIGIN, keys: testKeySet.keys })
    try {
      for (const headers of [{ connectionId }, {}] as Array<Record<string, string>>) await (await fetch(`${url}/api/greeting`, { headers })).body?.cancel()
      const res = await fetch(metricsUrl)
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
      return await res.text()
    } finally {
      await client.close()
    }
  }

  it('is valid text exposition with the same families, types, help texts and label names as the sources serve', async () => {
    const fromDist = parseStrictly(await session(built.url, built.metricsUrl))
    const fromSources = parseStrictly(await session(sources.url, sources.metricsUrl))
    assert.equal(fromDist.length, 20)
    assert.deepEqual(shape(fromDist), shape(fromSources))
    const handshake = fromDist.find((f) => f.name === 'wsds_handshake_duration_seconds')!
    assert.equal(handshake.metrics[0]!.buckets!['+Inf'], '1', 'the handshake reached the vendored Histogram')
  })
})
