/**
 * The part of prom-client's API that server/metrics.ts uses (Registry, Counter, Gauge,
 * registerMetric for the scrape-time histograms), writing the Prometheus text format 0.0.4.
 * prom-client with its dependencies (tdigest, bintrees, @opentelemetry/api) weighs about
 * 5 MB on disk in every app that installs the package, for counters that are all copied at
 * scrape time anyway (docs/packaging.md: the install budget). Same names and call shapes,
 * so metrics.ts reads as it did with prom-client.
 */

type Labels = Record<string, string | number>

export interface Sample {
  metricName?: string
  labels: Labels
  value: number
}

export interface MetricSnapshot {
  name: string
  help: string
  type: 'counter' | 'gauge' | 'histogram'
  values: Sample[]
}

/** What a registry scrapes: anything with a name and a `get()`, as prom-client's `registerMetric` takes. */
export interface Collectable {
  name: string
  get(): MetricSnapshot | Promise<MetricSnapshot>
  reset?(): void
}

interface MetricOptions<T> {
  name: string
  help: string
  labelNames?: readonly string[]
  registers?: Registry[]
  /** Called at every scrape, before the values are read (prom-client's `collect`). */
  collect?: (this: T) => void
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/

export class Registry {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8'
  #metrics = new Map<string, Collectable>()
  #defaultLabels: Labels = {}

  /** Labels added to every sample (a sample's own label of the same name wins). */
  setDefaultLabels(labels: Labels): void {
    for (const name of Object.keys(labels)) if (!LABEL_NAME.test(name)) throw new TypeError(`invalid label name ${JSON.stringify(name)}`)
    this.#defaultLabels = { ...labels }
  }

  registerMetric(metric: Collectable): void {
    if (this.#metrics.has(metric.name)) throw new Error(`a metric named ${metric.name} is already registered`)
    this.#metrics.set(metric.name, metric)
  }

  /** The whole exposition, one metric after another in registration order. */
  async metrics(): Promise<string> {
    const parts: string[] = []
    for (const metric of this.#metrics.values()) {
      const { name, help, type, values } = await metric.get()
      parts.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`)
      for (const sample of values) {
        const labels = { ...this.#defaultLabels, ...sample.labels }
        parts.push(`${sample.metricName ?? name}${formatLabels(labels)} ${formatValue(sample.value)}`)
      }
    }
    return parts.join('\n') + '\n'
  }
}

abstract class LabelledMetric<T> implements Collectable {
  readonly name: string
  readonly help: string
  protected readonly labelNames: readonly string[]
  protected values = new Map<string, Sample>()
  readonly #collect: ((this: T) => void) | undefined
  protected abstract readonly type: 'counter' | 'gauge'

  constructor(options: MetricOptions<T>) {
    if (!METRIC_NAME.test(options.name)) throw new TypeError(`invalid metric name ${JSON.stringify(options.name)}`)
    for (const label of options.labelNames ?? []) if (!LABEL_NAME.test(label)) throw new TypeError(`invalid label name ${JSON.stringify(label)}`)
    this.name = options.name
    this.help = options.help
    this.labelNames = options.labelNames ?? []
    this.#collect = options.collect
    this.reset()
    for (const registry of options.registers ?? []) registry.registerMetric(this)
  }

  /** Drops every labelled value; a metric without labels goes back to 0 (as in prom-client). */
  reset(): void {
    this.values.clear()
    if (this.labelNames.length === 0) this.values.set('', { labels: {}, value: 0 })
  }

  async get(): Promise<MetricSnapshot> {
    this.#collect?.call(this as unknown as T)
    return { name: this.name, help: this.help, type: this.type, values: [...this.values.values()] }
  }

  protected entry(labels: Labels): Sample {
    for (const name of Object.keys(labels)) {
      if (!this.labelNames.includes(name)) throw new Error(`${this.name} has no label ${name}`)
    }
    const key = this.labelNames.map((name) => String(labels[name] ?? '')).join('\u0000')
    let sample = this.values.get(key)
    if (sample === undefined) {
      sample = { labels: { ...labels }, value: 0 }
      this.values.set(key, sample)
    }
    return sample
  }
}

export class Counter extends LabelledMetric<Counter> {
  protected readonly type = 'counter'

  /** `inc()`, `inc(n)`, `inc(labels)` or `inc(labels, n)`; counters only go up. */
  inc(labelsOrValue?: Labels | number, value?: number): void {
    const [labels, n] = typeof labelsOrValue === 'object' ? [labelsOrValue, value ?? 1] : [{}, labelsOrValue ?? 1]
    if (!Number.isFinite(n) || n < 0) throw new Error(`${this.name}: a counter cannot be increased by ${n}`)
    this.entry(labels).value += n
  }
}

export class Gauge extends LabelledMetric<Gauge> {
  protected readonly type = 'gauge'

  /** `set(n)` or `set(labels, n)`. */
  set(labelsOrValue: Labels | number, value?: number): void {
    const [labels, n] = typeof labelsOrValue === 'object' ? [labelsOrValue, value ?? 0] : [{}, labelsOrValue]
    this.entry(labels).value = n
  }
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function formatLabels(labels: Labels): string {
  const names = Object.keys(labels)
  if (names.length === 0) return ''
  return `{${names.map((name) => `${name}="${escapeLabelValue(String(labels[name]))}"`).join(',')}}`
}

function formatValue(value: number): string {
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  if (Number.isNaN(value)) return 'NaN'
  return String(value)
}
