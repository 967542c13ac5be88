/**
 * `--only=middleware` (issue 7): each framework adapter's protected route against the same
 * route without it, in the same app (bench/servers/middleware-app.ts): Express, Fastify, and
 * Hono on @hono/node-server, memory store, warm cache. autocannon from the load generator,
 * 32 connections, the `connectionId` header of a verified connection on both routes.
 * One app process at a time; its routes (without, with WSDS, with a no-op middleware for
 * context) take turns in rounds.
 */
import type { SectionContext } from './context.ts'
import {
  DURATION_MS,
  REST_CONNECTIONS,
  atLeast,
  autocannonRun,
  busyWindows,
  fmt,
  log,
  pairs,
  ratio,
  spread,
  start,
  stop,
  throughputPhase,
  verdict,
  x,
  type SectionResult,
  type Subject,
  type ThroughputRun,
  type Verdict,
} from '../lib/common.ts'

/** Measured ms per side: whole seconds per round (autocannon's unit). */
const wholeSecondsPerSide = (ms: number, rounds: number) => Math.max(1, Math.round(ms / rounds / 1000)) * 1000 * rounds

const MIDDLEWARE_TARGETS = { ratio: 0.9 }
const ALL_FRAMEWORKS = ['express', 'fastify', 'hono'] as const
/** BENCH_FRAMEWORKS=hono,express runs only those (for a quicker look at one adapter). */
const FRAMEWORKS = ALL_FRAMEWORKS.filter((fw) => (process.env.BENCH_FRAMEWORKS ?? ALL_FRAMEWORKS.join(',')).split(',').includes(fw))
const LABEL: Record<(typeof ALL_FRAMEWORKS)[number], string> = { express: 'Express 5', fastify: 'Fastify 5', hono: 'Hono (@hono/node-server)' }
/** Rounds per side, and measured time per side. */
const MW_ROUNDS = 8
const MW_MS = wholeSecondsPerSide(DURATION_MS * 1.6, MW_ROUNDS)

export async function middlewareSection(ctx: SectionContext): Promise<SectionResult> {
  const load = await start('load', 'load/main.ts', { env: ctx.benchEnv, execArgv: ctx.profileArgv('load') })
  const results: Record<
    string,
    { open: ThroughputRun; protected: ThroughputRun; noop: ThroughputRun; route: ThroughputRun | null; ratio: number; verdict: Verdict; decisions: Record<string, number> }
  > = {}
  try {
    for (const fw of FRAMEWORKS) {
      const app = await start(fw, 'servers/middleware-app.ts', { env: { ...ctx.benchEnv, BENCH_FRAMEWORK: fw }, execArgv: ctx.profileArgv(fw) })
      const { connectionId } = await load.call('verifyHold', { wsUrl: app.info.wsUrl })
      const headers = { connectionId }
      const subject = (name: string, path: string): Subject => ({ name, pids: { app: [app.pid], load: [load.pid] }, run: autocannonRun(load, app.info.url + path, headers), wholeSeconds: true })
      const open = subject(`${fw} without`, '/open/greeting')
      const prot = subject(`${fw} with`, '/api/greeting')
      const noop = subject(`${fw} no-op middleware`, '/noop/greeting')
      // Hono's protect(handler): the same check without Hono's middleware chain.
      const route = fw === 'hono' ? subject(`${fw} protect()`, '/route/greeting') : null
      log(`middleware: ${LABEL[fw]}, route without, with WSDS${route ? ', with protect()' : ''} and with a no-op middleware in rotation, ${MW_ROUNDS} rounds each`)
      const r = await throughputPhase(route ? [open, prot, route, noop] : [open, prot, noop], MW_ROUNDS, MW_MS)
      const state = await app.call('gateway')
      await load.call('closeHeld')
      await stop(app)
      const ro = r.get(open)!
      const rp = r.get(prot)!
      const rn = r.get(noop)!
      const rr = route ? r.get(route)! : null
      const non2xx = rp.non2xx + ro.non2xx + rn.non2xx + (rr?.non2xx ?? 0)
      if (non2xx > 0) throw new Error(`${fw}: ${rp.non2xx} protected, ${ro.non2xx} open, ${rn.non2xx} no-op and ${rr?.non2xx ?? 0} protect() requests answered non-2xx`)
      const q = ratio(rp.perSecond, ro.perSecond)
      results[fw] = { open: ro, protected: rp, noop: rn, route: rr, ratio: q, verdict: atLeast(q, MIDDLEWARE_TARGETS.ratio), decisions: state.decisions }
    }
  } finally {
    await stop(load)
  }
  const rows: string[][] = [['Measurement', 'WSDS', 'Baseline', 'Ratio', 'Target', 'Verdict']]
  for (const fw of FRAMEWORKS) {
    const r = results[fw]!
    rows.push(
      [`${LABEL[fw]}: protected route vs same route without, req/s`, fmt(r.protected.perSecond), fmt(r.open.perSecond), x(r.protected.perSecond, r.open.perSecond), `>= ${fmt(MIDDLEWARE_TARGETS.ratio, 2)}x`, verdict(r.verdict.pass)],
      ['  adjacent-round ratios: median (min-max)', '', '', spread(pairs(r.protected.rounds, r.open.rounds)), '', ''],
      ['  app CPU per request, us', fmt(r.protected.cpuUsPerOp.app!, 1), fmt(r.open.cpuUsPerOp.app!, 1), x(r.protected.cpuUsPerOp.app!, r.open.cpuUsPerOp.app!), '', ''],
      ['  no-op middleware vs without (context), req/s', fmt(r.noop.perSecond), fmt(r.open.perSecond), x(r.noop.perSecond, r.open.perSecond), '', ''],
      ['  WSDS vs no-op middleware (context), req/s', fmt(r.protected.perSecond), fmt(r.noop.perSecond), x(r.protected.perSecond, r.noop.perSecond), '', ''],
      ['  latency p99, ms', fmt(r.protected.latencyMs.p99, 1), fmt(r.open.latencyMs.p99, 1), '', '', ''],
    )
    if (r.route !== null) {
      const q = ratio(r.route.perSecond, r.open.perSecond)
      rows.push(
        [`${LABEL[fw]}: guard.protect(handler) route vs same route without, req/s`, fmt(r.route.perSecond), fmt(r.open.perSecond), x(r.route.perSecond, r.open.perSecond), `>= ${fmt(MIDDLEWARE_TARGETS.ratio, 2)}x`, verdict(q >= MIDDLEWARE_TARGETS.ratio)],
        ['  adjacent-round ratios: median (min-max)', '', '', spread(pairs(r.route.rounds, r.open.rounds)), '', ''],
        ['  app CPU per request, us', fmt(r.route.cpuUsPerOp.app!, 1), fmt(r.open.cpuUsPerOp.app!, 1), x(r.route.cpuUsPerOp.app!, r.open.cpuUsPerOp.app!), '', ''],
      )
    }
  }
  const verdicts: Record<string, Verdict> = Object.fromEntries(FRAMEWORKS.map((fw) => [`${fw}Ratio`, results[fw]!.verdict]))
  const route = results.hono?.route
  if (route) verdicts.honoProtectRatio = atLeast(ratio(route.perSecond, results.hono!.open.perSecond), MIDDLEWARE_TARGETS.ratio)
  return {
    rows,
    notes: [
      `Same app, same handler, memory store, warm cache; autocannon ${REST_CONNECTIONS} connections, ${MW_ROUNDS} rounds of ${fmt(MW_MS / MW_ROUNDS / 1000, 2)} s per side.`,
      `Decisions counted by the middleware: ${FRAMEWORKS.map((fw) => `${fw} ${JSON.stringify(results[fw]!.decisions)}`).join('; ')}`,
    ],
    noisy: busyWindows(Object.fromEntries(FRAMEWORKS.flatMap((fw) => [[`${fw} with`, results[fw]!.protected], [`${fw} without`, results[fw]!.open], [`${fw} no-op`, results[fw]!.noop]]))),
    errors: FRAMEWORKS.reduce((n, fw) => n + results[fw]!.open.errors + results[fw]!.protected.errors + results[fw]!.noop.errors, 0),
    json: {
      settings: { roundsEach: MW_ROUNDS, msPerSide: MW_MS, connections: REST_CONNECTIONS },
      verdicts,
      ...Object.fromEntries(FRAMEWORKS.map((fw) => [fw, { ...results[fw]!, adjacentRoundRatios: pairs(results[fw]!.protected.rounds, results[fw]!.open.rounds) }])),
    },
  }
}
