/**
 * `tsx bench/policy.ts`: what policy rules cost per request, in process (no HTTP): rule
 * evaluation alone for a typical file and for the largest allowed one, and a front's whole
 * decision with and without rules. Single-threaded; figures belong in docs/benchmarks.md only
 * from a quiet machine. BENCH_POLICY_ITERATIONS (default 200000) sets the count.
 */
import { createHash } from 'node:crypto'
import type { AccessRequest } from '../src/core/access.ts'
import { createAuthenticator } from '../src/core/authenticator.ts'
import { createFront } from '../src/core/front.ts'
import { compilePolicy, MAX_RULES } from '../src/core/policy.ts'
import type { ConnectionRecord } from '../src/core/store.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { nodeSha256 } from '../src/server/policy-file.ts'

const N = Number(process.env.BENCH_POLICY_ITERATIONS ?? 200_000)
const hex = (t: string) => createHash('sha256').update(t).digest('hex')

const typical = compilePolicy({
  rules: [
    { name: 'admin', match: { path: '/api/admin/**' }, action: 'deny' },
    { name: 'health-probe', match: { path: '/api/health', methods: ['GET', 'HEAD'], cidr: ['10.0.0.0/8'] }, action: 'allow' },
    { name: 'mobile-app', match: { path: '/api/**', token_sha256: [hex('a'), hex('b')] }, action: 'allow' },
    { name: 'partner', match: { cidr: ['203.0.113.0/24', '2001:db8::/32'], path: '/api/partner/**' }, action: 'allow' },
    { name: 'exports', match: { path: '/api/export/*' }, action: 'verify' },
  ],
})
const largest = compilePolicy({
  rules: Array.from({ length: MAX_RULES }, (_, i) => ({
    name: `r${i}`,
    match: { path: `/api/v${i}/**`, methods: ['POST'], cidr: [`10.${i % 256}.0.0/16`] },
    action: 'allow',
  })),
})

const page: AccessRequest = { connectionId: 'AAAAAAAAAAAAAAAAAAAAAA', method: 'GET', target: '/api/greeting?who=x', remoteAddress: '192.0.2.7' }

function time(label: string, fn: () => unknown, n = N): void {
  for (let i = 0; i < Math.min(n, 20_000); i++) fn()
  const started = process.hrtime.bigint()
  for (let i = 0; i < n; i++) fn()
  const ns = Number(process.hrtime.bigint() - started) / n
  console.log(`${label.padEnd(62)} ${ns.toFixed(0).padStart(8)} ns/op`)
}

async function timeAsync(label: string, fn: () => Promise<unknown>): Promise<void> {
  const n = Math.max(1, Math.floor(N / 4))
  for (let i = 0; i < Math.min(n, 5_000); i++) await fn()
  const started = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await fn()
  const ns = Number(process.hrtime.bigint() - started) / n
  console.log(`${label.padEnd(62)} ${ns.toFixed(0).padStart(8)} ns/op`)
}

console.log(`node ${process.version}, ${N} iterations`)
time('evaluate, 5 rules, unmatched page request (all 5 tried)', () => typical.evaluate(page))
time('evaluate, 5 rules, /api/admin/x (first rule)', () => typical.evaluate({ ...page, target: '/api/admin/x' }))
time(`evaluate, ${MAX_RULES} rules, unmatched (worst case)`, () => largest.evaluate({ ...page, method: 'POST' }), Math.max(1, Math.floor(N / 100)))

const store = createMemoryStore()
const record: ConnectionRecord = { connectionId: page.connectionId!, origin: 'https://app.example', status: 'verified', createdAt: Date.now(), verifiedAt: Date.now(), expiresAt: Date.now() + 3_600_000, nodeId: 'n' }
await store.put(record, { ttlMs: 3_600_000 })
const plain = createFront({ authenticator: createAuthenticator({ store }) })
const ruled = createFront({ authenticator: createAuthenticator({ store }), policy: { current: typical }, sha256: nodeSha256 })
await plain.decide(page)
await ruled.decide(page)
time('front.decideCached, no rules (the hot path today)', () => plain.decideCached(page.connectionId))
await timeAsync('front.decide, no rules, cached id', () => plain.decide(page))
await timeAsync('front.decide, 5 rules, cached id (rules fall to verify)', () => ruled.decide(page))
await timeAsync('front.decide, 5 rules, probe allowed by rule', () => ruled.decide({ ...page, connectionId: undefined, target: '/api/health', remoteAddress: '10.1.1.1' }))
await timeAsync('front.decide, 5 rules, service token (hash cached)', () => ruled.decide({ ...page, connectionId: undefined, serviceToken: 'a' }))
