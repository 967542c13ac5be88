/** server/prometheus.ts: the exposition format the gateway's /metrics writes, as prom-client wrote it. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
// @ts-expect-error no declaration file
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { Counter, Gauge, Registry, type Sample } from '../src/server/prometheus.ts'

describe('Prometheus registry', () => {
  it('writes HELP, TYPE and one sample per label set, with the default labels on every sample', async () => {
    const registry = new Registry()
    registry.setDefaultLabels({ node: 'n1' })
    const counter = new Counter({ name: 'x_total', help: 'Things', labelNames: ['result'], registers: [registry] })
    counter.inc({ result: 'ok' }, 3)
    counter.inc({ result: 'ok' })
    counter.inc({ result: 'bad' }, 0)
    new Gauge({ name: 'open', help: 'Open now', registers: [registry], collect() { this.set(7) } })
    assert.equal(
      await registry.metrics(),
      [
        '# HELP x_total Things',
        '# TYPE x_total counter',
        'x_total{node="n1",result="ok"} 4',
        'x_total{node="n1",result="bad"} 0',
        '# HELP open Open now',
        '# TYPE open gauge',
        'open{node="n1"} 7',
        '',
      ].join('\n'),
    )
    assert.equal(registry.contentType, 'text/plain; version=0.0.4; charset=utf-8')
  })

  it('runs collect at every scrape, and a reset labelled metric shows only what collect set again', async () => {
    const registry = new Registry()
    let source: Record<string, number> = { a: 1, b: 2 }
    new Counter({
      name: 'c_total',
      help: 'h',
      labelNames: ['k'],
      registers: [registry],
      collect() {
        this.reset()
        for (const [k, n] of Object.entries(source)) this.inc({ k }, n)
      },
    })
    assert.match(await registry.metrics(), /c_total\{k="b"\} 2/)
    source = { a: 5 }
    const text = await registry.metrics()
    assert.match(text, /c_total\{k="a"\} 5/)
    assert.doesNotMatch(text, /k="b"/)
  })

  it('shows 0 for a metric without labels that was never increased', async () => {
    const registry = new Registry()
    new Counter({ name: 'z_total', help: 'h', registers: [registry] })
    assert.match(await registry.metrics(), /^z_total 0$/m)
  })

  it('escapes label values and help text so the output stays parseable', async () => {
    const registry = new Registry()
    const counter = new Counter({ name: 'e_total', help: 'back\\slash\nnewline', labelNames: ['reason'], registers: [registry] })
    counter.inc({ reason: 'say "hi"\\\n' }, 1)
    const text = await registry.metrics()
    assert.match(text, /^# HELP e_total back\\\\slash\\nnewline$/m)
    const [family] = parsePrometheusTextFormat(text) as Array<{ name: string; metrics: Array<{ labels: Record<string, string>; value: string }> }>
    assert.equal(family!.metrics[0]!.labels.reason, 'say "hi"\\\n')
    assert.equal(family!.metrics[0]!.value, '1')
  })

  it('exposes a registered histogram with cumulative buckets, +Inf, sum and count', async () => {
    const registry = new Registry()
    registry.setDefaultLabels({ node: 'n' })
    registry.registerMetric({
      name: 'h_seconds',
      get: () => ({
        name: 'h_seconds',
        help: 'h',
        type: 'histogram',
        values: <Sample[]>[
          { metricName: 'h_seconds_bucket', labels: { le: 0.1 }, value: 1 },
          { metricName: 'h_seconds_bucket', labels: { le: '+Inf' }, value: 2 },
          { metricName: 'h_seconds_sum', labels: {}, value: 0.35 },
          { metricName: 'h_seconds_count', labels: {}, value: 2 },
        ],
      }),
    })
    const text = await registry.metrics()
    assert.match(text, /^h_seconds_bucket\{node="n",le="0.1"\} 1$/m)
    assert.match(text, /^h_seconds_bucket\{node="n",le="\+Inf"\} 2$/m)
    assert.match(text, /^h_seconds_sum\{node="n"\} 0.35$/m)
    assert.match(text, /^h_seconds_count\{node="n"\} 2$/m)
    const [family] = parsePrometheusTextFormat(text) as Array<{ type: string; metrics: Array<{ buckets: Record<string, string> }> }>
    assert.equal(family!.type, 'HISTOGRAM')
    assert.deepEqual(family!.metrics[0]!.buckets, { '0.1': '1', '+Inf': '2' })
  })

  it('refuses a negative counter step, an undeclared label, a duplicate name and an invalid name', () => {
    const registry = new Registry()
    const counter = new Counter({ name: 'n_total', help: 'h', labelNames: ['a'], registers: [registry] })
    assert.throws(() => counter.inc({ a: 'x' }, -1), /cannot be increased by -1/)
    assert.throws(() => counter.inc({ b: 'x' }), /has no label b/)
    assert.throws(() => new Counter({ name: 'n_total', help: 'h', registers: [registry] }), /already registered/)
    assert.throws(() => new Gauge({ name: 'bad-name', help: 'h' }), /invalid metric name/)
  })
})
