/**
 * Summarizes a V8 .cpuprofile (from `BENCH_PROFILE=<process> npm run bench`): self and
 * inclusive time per function, optionally only for samples whose stack contains a marker
 * function, or inside a time window.
 *
 *   tsx bench/profile-summary.ts <file.cpuprofile> [--within name] [--from s] [--to s] [--top n] [--per ops] [--timeline]
 *
 * --timeline prints busy ms per second of the profile, to find the phases.
 */
import { readFileSync } from 'node:fs'

interface Node {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}
interface Profile {
  nodes: Node[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

// Piped into head: stop quietly.
process.stdout.on('error', () => process.exit(0))

const args = process.argv.slice(2)
const file = args[0]
if (file === undefined) {
  process.stderr.write('usage: tsx bench/profile-summary.ts <file.cpuprofile> [--within name] [--from s] [--to s] [--top n]\n')
  process.exit(2)
}
const opt = (name: string) => {
  const i = args.indexOf(name)
  return i === -1 ? undefined : args[i + 1]
}
const within = opt('--within')
const from = Number(opt('--from') ?? 0) * 1e6
const to = Number(opt('--to') ?? Infinity) * 1e6
const top = Number(opt('--top') ?? 30)
/** --per N: also print time per operation (us), for N operations in the profiled window. */
const per = opt('--per') === undefined ? null : Number(opt('--per'))

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)

const label = (n: Node) => {
  const url = n.callFrame.url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '~/').replace(/^.*\/work\/main\//, '')
  return `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`
}

if (args.includes('--timeline')) {
  const idleIds = new Set(profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id))
  const busy: number[] = []
  let at = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0
    at += dt
    const s = Math.floor(at / 1e6)
    busy[s] = (busy[s] ?? 0) + (idleIds.has(profile.samples[i]!) ? 0 : dt)
  }
  process.stdout.write(busy.map((us, s) => `${s}s:${Math.round((us ?? 0) / 1000)}`).join(' ') + '\n')
  process.exit(0)
}

const self = new Map<string, number>()
const inclusive = new Map<string, number>()
let total = 0
let idle = 0
let t = 0
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0
  t += dt
  if (t < from || t > to) continue
  const leaf = byId.get(profile.samples[i]!)!
  const stack: Node[] = []
  for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) stack.push(byId.get(id)!)
  if (leaf.callFrame.functionName === '(idle)') {
    idle += dt
    continue
  }
  if (within !== undefined && !stack.some((n) => n.callFrame.functionName === within)) continue
  total += dt
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt)
  const seen = new Set<string>()
  for (const n of stack) {
    const l = label(n)
    if (seen.has(l)) continue
    seen.add(l)
    inclusive.set(l, (inclusive.get(l) ?? 0) + dt)
  }
}
const ms = (us: number) => (us / 1000).toFixed(0).padStart(7)
const share = (us: number) =>
  ((100 * us) / Math.max(1, total)).toFixed(1).padStart(5) + '%' + (per === null ? '' : ` ${(us / per).toFixed(2).padStart(7)} us/op`)
process.stdout.write(`busy ${ms(total)} ms, idle ${ms(idle)} ms (profile ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s)\n`)
const list = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`)
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) process.stdout.write(`${ms(v)} ms ${share(v)}  ${k}\n`)
}
list('self time', self)
list('inclusive time', inclusive)
