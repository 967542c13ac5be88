/**
 * The one import of prom-client, and only the four classes the metrics use. prom-client is a
 * devDependency: with tdigest and @opentelemetry/api it would take about 4.7 MB of an app's
 * install budget (docs/packaging.md). From the sources (tsx, tests) this resolves to the
 * installed package; scripts/build.ts points the compiled module at dist/server/vendor/,
 * a bundle of exactly these classes from that same package, shipped with its licence.
 */
export { Counter, Gauge, Histogram, Registry } from 'prom-client'
