/**
 * One table of policy rule cases (PROTOCOL.md, "Policy rules"), run through every front:
 * the gateway's /api proxy, nginx forward auth, the Express, Fastify and Hono middleware and
 * the AWS authorizer. A front supplies how to send a request; the table says what it must answer.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { it } from 'node:test'

export const MOBILE_TOKEN = 'mobile-app-token-7f3a9c'
export const OTHER_TOKEN = 'not-the-mobile-token'
export const PARTNER_V4 = '203.0.113.7'
export const PARTNER_V6 = '2001:db8:5::7'

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex')

/** The rules file, in exactly the format of PROTOCOL.md. */
export const POLICY_YAML = `# first match wins
rules:
  - name: admin
    match:
      path: /api/admin/**
    action: deny
  - name: health-probe
    match:
      path: /api/health
      methods: [GET, HEAD]
    action: allow
  - name: mobile-app
    match:
      token_sha256: [${sha256Hex(MOBILE_TOKEN)}]
    action: allow
  - name: partner
    match:
      cidr: [203.0.113.0/24, "2001:db8::/32"]
    action: allow
  - name: exports-need-a-page
    match:
      path: /api/export/*
    action: verify
default: verify
`

/** The same rules as JSON (the file may be either). */
export const POLICY_JSON = JSON.stringify({
  rules: [
    { name: 'admin', match: { path: '/api/admin/**' }, action: 'deny' },
    { name: 'health-probe', match: { path: '/api/health', methods: ['GET', 'HEAD'] }, action: 'allow' },
    { name: 'mobile-app', match: { token_sha256: [sha256Hex(MOBILE_TOKEN)] }, action: 'allow' },
    { name: 'partner', match: { cidr: ['203.0.113.0/24', '2001:db8::/32'] }, action: 'allow' },
    { name: 'exports-need-a-page', match: { path: '/api/export/*' }, action: 'verify' },
  ],
  default: 'verify',
})

export function writePolicyFile(text = POLICY_YAML, name = 'policy.yaml'): string {
  const path = join(mkdtempSync(join(tmpdir(), 'wsds-policy-')), name)
  writeFileSync(path, text)
  return path
}

export interface PolicyCase {
  name: string
  method: string
  path: string
  /** Send the id of a verified connection. */
  verified?: boolean
  headers?: Record<string, string>
  /** X-Forwarded-For the client sends (honoured only by a front that trusts its proxy). */
  forwardedFor?: string
  /** What enforce mode answers. */
  status: 200 | 401 | 403
  /** The rule behind an allow or deny, as X-WSDS-Rule names it to the upstream. */
  rule?: string
}

export const POLICY_CASES: readonly PolicyCase[] = [
  { name: 'a probe on the allowed path and method passes without an id', method: 'GET', path: '/api/health', status: 200, rule: 'health-probe' },
  { name: 'the probe path with a query still matches its rule', method: 'GET', path: '/api/health?deep=1', status: 200, rule: 'health-probe' },
  { name: 'the probe path with another method falls to verify (401 without an id)', method: 'POST', path: '/api/health', status: 401 },
  { name: 'the probe path with another method and a verified id passes', method: 'POST', path: '/api/health', verified: true, status: 200 },
  { name: 'a denied path answers 403 without an id', method: 'GET', path: '/api/admin/users', status: 403, rule: 'admin' },
  { name: 'a denied path answers 403 even to a verified page (deny comes first)', method: 'GET', path: '/api/admin', verified: true, status: 403, rule: 'admin' },
  { name: 'a denied path answers 403 even with the mobile token (first match wins)', method: 'GET', path: '/api/admin/x', headers: { authorization: `Bearer ${MOBILE_TOKEN}` }, status: 403, rule: 'admin' },
  { name: 'a service token in Authorization: Bearer passes without an id', method: 'GET', path: '/api/greeting?who=app', headers: { authorization: `Bearer ${MOBILE_TOKEN}` }, status: 200, rule: 'mobile-app' },
  { name: 'a service token in X-WSDS-Service-Token passes without an id', method: 'POST', path: '/api/orders', headers: { 'x-wsds-service-token': MOBILE_TOKEN }, status: 200, rule: 'mobile-app' },
  { name: 'an unknown service token falls to verify', method: 'GET', path: '/api/greeting', headers: { authorization: `Bearer ${OTHER_TOKEN}` }, status: 401 },
  { name: 'an unmatched request without an id gets 401', method: 'GET', path: '/api/greeting?who=x', status: 401 },
  { name: 'an unmatched request with a verified id passes', method: 'GET', path: '/api/greeting?who=x', verified: true, status: 200 },
  { name: 'a verify rule needs an id', method: 'GET', path: '/api/export/all', status: 401 },
  { name: 'a verify rule admits a verified id', method: 'GET', path: '/api/export/all', verified: true, status: 200 },
]

/** Cases whose outcome depends on whether X-Forwarded-For is believed. */
export const FORWARDED_CASES: readonly (PolicyCase & { trustedStatus: 200 | 401 })[] = [
  { name: 'an IPv4 partner address in X-Forwarded-For', method: 'GET', path: '/api/greeting', forwardedFor: PARTNER_V4, status: 401, trustedStatus: 200, rule: 'partner' },
  { name: 'an IPv6 partner address in X-Forwarded-For', method: 'GET', path: '/api/greeting', forwardedFor: PARTNER_V6, status: 401, trustedStatus: 200, rule: 'partner' },
  { name: 'a first X-Forwarded-For entry outside the partner blocks', method: 'GET', path: '/api/greeting', forwardedFor: `198.51.100.1, ${PARTNER_V4}`, status: 401, trustedStatus: 401 },
]

export interface FrontAnswer {
  status: number
  body: string
  /** The X-WSDS-Rule the upstream saw, when the front tells it (null when it did not). */
  rule?: string | null
}

export interface PolicyFront {
  /** Sends one request through the front. `connectionId` is set when the case says verified. */
  send(c: PolicyCase, connectionId: string | undefined): Promise<FrontAnswer>
  /** A verified connection's id (held open until close). */
  verifiedId(): Promise<string>
  /** Whether this front believes X-Forwarded-For (null: it has no such setting, skip those cases). */
  trustsForwardedFor: boolean | null
  /** Whether the upstream is told the rule name (X-WSDS-Rule), so the table can check it. */
  reportsRule: boolean
}

/** Registers one `it` per case; `front()` is read when the case runs (after `before`). */
export function policyCases(front: () => PolicyFront): void {
  const run = async (c: PolicyCase, status: number, rule: string | undefined) => {
    const f = front()
    const id = c.verified ? await f.verifiedId() : undefined
    const answer = await f.send(c, id)
    assert.equal(answer.status, status, `${c.method} ${c.path}: ${answer.body}`)
    if (status === 401) assert.deepEqual(JSON.parse(answer.body), { error: 'unauthorized' })
    if (status === 403) assert.deepEqual(JSON.parse(answer.body), { error: 'forbidden' })
    if (status === 200 && f.reportsRule) assert.equal(answer.rule || null, rule ?? null, 'X-WSDS-Rule seen upstream (empty = none)')
  }
  for (const c of POLICY_CASES) it(c.name, () => run(c, c.status, c.rule))
  for (const c of FORWARDED_CASES) {
    it(`${c.name}: admitted only when the front trusts its proxy`, async (t) => {
      const f = front()
      if (f.trustsForwardedFor === null) return t.skip('this front has no trusted-proxy setting')
      await run(c, f.trustsForwardedFor ? c.trustedStatus : c.status, f.trustsForwardedFor && c.trustedStatus === 200 ? c.rule : undefined)
    })
  }
}
