/** Every query in the shipped Grafana dashboard names metrics the gateway really exports. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { startTestServer, type TestServer } from './helpers/server.ts'

const PROMQL_WORDS = new Set(['sum', 'by', 'rate', 'histogram_quantile', 'le', 'result', 'reason', 'node', 'outcome', 'mode', 'hit', 'm', 'family', 'verdict', 'rule', 'action', 'trigger', 'bits'])

describe('Grafana dashboard', () => {
  let s: TestServer
  before(async () => (s = await startTestServer()))
  after(() => s.close())

  it('uses only exported metric names in every query', async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text()
    const exported = new Set<string>()
    for (const line of text.split('\n')) {
      const m = /^# TYPE (\S+) (\S+)/.exec(line)
      if (!m) continue
      exported.add(m[1]!)
      if (m[2] === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exported.add(m[1]! + suffix)
    }
    const dashboard = JSON.parse(readFileSync(new URL('../deploy/grafana/wsds-dashboard.json', import.meta.url), 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>
    }
    assert.ok(dashboard.panels.length >= 8)
    let names = 0
    for (const panel of dashboard.panels) {
      assert.ok(panel.targets.length > 0, `${panel.title} has no query`)
      for (const { expr } of panel.targets) {
        // Identifiers outside label matchers and strings: metric names and PromQL words.
        const bare = expr.replace(/\{[^}]*\}/g, '').replace(/\[[^\]]*\]/g, '').replace(/"[^"]*"/g, '')
        const idents = bare.match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? []
        const metrics = idents.filter((i) => !PROMQL_WORDS.has(i))
        assert.ok(metrics.length > 0, `${panel.title}: no metric in ${expr}`)
        for (const name of metrics) {
          names++
          assert.ok(exported.has(name), `${panel.title}: ${name} is not exported`)
        }
      }
    }
    // Every exported family appears somewhere on the dashboard.
    const used = JSON.stringify(dashboard)
    for (const name of exported) if (!/_(bucket|sum|count)$/.test(name)) assert.ok(used.includes(name.replace(/_seconds$/, '_seconds')), `${name} has no panel`)
    assert.ok(names >= 10)
  })
})
