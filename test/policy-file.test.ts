/**
 * WSDS_POLICY_FILE as an operator meets it: a bad file stops the start naming the rule and
 * field; SIGHUP and a changed file reload it; a bad reload keeps the rules in force; monitor
 * mode labels rule verdicts; metrics count per rule; `wsds policy check|hash-token`.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { createAuthenticator } from '../src/core/authenticator.ts'
import { isWsdsError } from '../src/core/errors.ts'
import { createFront } from '../src/core/front.ts'
import { compilePolicy } from '../src/core/policy.ts'
import { openPolicyFile, parsePolicyText, readPolicyFile } from '../src/server/policy-file.ts'
import { createMemoryStore } from '../src/stores/memory.ts'
import { POLICY_YAML, writePolicyFile } from './contracts/policy-cases.ts'
import { eventually } from './contracts/protocol-suite.ts'
import { startTestServer, type TestServer } from './helpers/server.ts'
import { pino } from 'pino'
import { Writable } from 'node:stream'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

const DENY_X = `rules:
  - name: block-x
    match: { path: /api/x }
    action: deny
`
const ALLOW_X = `rules:
  - name: open-x
    match: { path: /api/x, methods: [GET] }
    action: allow
`
const BAD_RULE = `rules:
  - name: ok
    match: { path: /api/ok }
    action: allow
  - name: partner
    match: { cidr: [300.0.0.0/8] }
    action: allow
`

function policyErrorMentions(err: unknown, ...fragments: string[]): boolean {
  assert.ok(isWsdsError(err, 'ERR_POLICY'), `ERR_POLICY expected, got ${String(err)}`)
  for (const f of fragments) assert.ok(err.message.includes(f), `${JSON.stringify(err.message)} should mention ${JSON.stringify(f)}`)
  return true
}

function captureLogger() {
  const events: { event: string; error?: string; reason?: string }[] = []
  return {
    events,
    info: (fields: object) => void events.push(fields as (typeof events)[number]),
    error: (fields: object) => void events.push(fields as (typeof events)[number]),
  }
}

async function startEcho(): Promise<{ server: Server; url: string }> {
  const server = createServer((req: IncomingMessage, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ verdict: req.headers['x-wsds-verdict'] ?? null, rule: req.headers['x-wsds-rule'] ?? null }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

const statusOf = async (url: string, init: RequestInit = {}) => (await fetch(url, init)).status

describe('reading a rules file', () => {
  it('reads YAML and JSON alike', () => {
    assert.equal(readPolicyFile(writePolicyFile()).rules.length, 5)
    assert.equal(readPolicyFile(writePolicyFile('{"rules":[{"name":"a","match":{"path":"/x"},"action":"deny"}]}', 'p.json')).rules[0]!.name, 'a')
  })

  it('names the file, the rule and the field of a bad rule', () => {
    const path = writePolicyFile(BAD_RULE)
    assert.throws(() => readPolicyFile(path), (err) => policyErrorMentions(err, path, 'rule #1 "partner"', 'match.cidr[0]'))
  })

  it('refuses YAML with a repeated key (a second action must not silently win), and text that is not YAML or JSON', () => {
    const twice = 'rules:\n  - name: a\n    match: { path: /x }\n    action: deny\n    action: allow\n'
    assert.throws(() => parsePolicyText(twice, 'f.yaml'), (err) => policyErrorMentions(err, 'f.yaml', 'not YAML'))
    assert.throws(() => parsePolicyText('{"rules": [', 'f.json'), (err) => policyErrorMentions(err, 'f.json', 'not JSON'))
    assert.throws(() => parsePolicyText('rules: [\n', 'f.yaml'), (err) => policyErrorMentions(err, 'not YAML'))
  })

  it('says so when the file cannot be read', () => {
    assert.throws(() => readPolicyFile('/nonexistent/wsds-policy.yaml'), (err) => policyErrorMentions(err, '/nonexistent/wsds-policy.yaml', 'cannot read'))
  })
})

describe('starting with a bad rules file', () => {
  it('startServer rejects with ERR_POLICY naming the rule and field', async () => {
    await assert.rejects(startTestServer({ policyFile: writePolicyFile(BAD_RULE) }), (err) => policyErrorMentions(err, '"partner"', 'match.cidr[0]'))
  })

  it('wsds serve exits 2 with one line naming the rule and field', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--port', '0', '--policy-file', writePolicyFile(BAD_RULE)], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WSDS_DEMO: 'off' },
    })
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += d))
    const code = await new Promise<number | null>((r) => child.on('exit', r))
    assert.equal(code, 2, stderr)
    assert.match(stderr, /^wsds: .*rule #1 "partner": match\.cidr\[0\]/)
  })
})

describe('reloading the rules file', () => {
  it('SIGHUP reloads it', async () => {
    const path = writePolicyFile(DENY_X)
    const logger = captureLogger()
    const file = openPolicyFile(path, { logger, watchIntervalMs: 0 })
    try {
      assert.equal(file.current.rules[0]!.name, 'block-x')
      writeFileSync(path, ALLOW_X)
      process.kill(process.pid, 'SIGHUP')
      await eventually(() => file.current.rules[0]!.name === 'open-x', 5000, 'the SIGHUP reload')
      assert.deepEqual(
        logger.events.map((e) => [e.event, e.reason]),
        [['policy-reloaded', 'SIGHUP']],
      )
    } finally {
      file.close()
    }
  })

  it('a reload that fails keeps the rules in force and logs why', async () => {
    const path = writePolicyFile(DENY_X)
    const logger = captureLogger()
    const file = openPolicyFile(path, { logger, watchIntervalMs: 0 })
    try {
      const before = file.current
      writeFileSync(path, BAD_RULE)
      assert.equal(file.reload('SIGHUP'), false)
      assert.equal(file.current, before)
      assert.equal(logger.events[0]!.event, 'policy-reload-failed')
      assert.match(logger.events[0]!.error!, /rule #1 "partner": match\.cidr\[0\]/)
      rmSync(path)
      assert.equal(file.reload('SIGHUP'), false, 'a deleted file fails too')
      assert.equal(file.current, before)
    } finally {
      file.close()
    }
  })

  it('stops listening for SIGHUP when closed', () => {
    const listeners = process.listenerCount('SIGHUP')
    const file = openPolicyFile(writePolicyFile(DENY_X), { watchIntervalMs: 0 })
    assert.equal(process.listenerCount('SIGHUP'), listeners + 1)
    file.close()
    file.close()
    assert.equal(process.listenerCount('SIGHUP'), listeners)
  })

  describe('in a running gateway', () => {
    let echo: Awaited<ReturnType<typeof startEcho>>
    let gateway: TestServer
    let path: string
    before(async () => {
      echo = await startEcho()
      path = writePolicyFile(DENY_X)
      gateway = await startTestServer({ policyFile: path, upstream: echo.url })
    })
    after(async () => {
      await gateway?.close()
      echo?.server.closeAllConnections()
      echo?.server.close()
    })

    it('a changed file takes effect without a signal; a bad change keeps the rules in force', async () => {
      assert.equal(await statusOf(`${gateway.url}/api/x`), 403)
      writeFileSync(path, ALLOW_X)
      // The file is polled once a second (src/server/policy-file.ts): a generous margin.
      await eventually(async () => (await statusOf(`${gateway.url}/api/x`)) === 200, 15_000, 'the file-change reload')
      writeFileSync(path, BAD_RULE + '# a broken edit\n')
      await eventually(() => gateway.policy!.current.rules[0]!.name === 'open-x' && gateway.policy!.reload('test') === false, 15_000, 'the failed reload')
      assert.equal(await statusOf(`${gateway.url}/api/x`), 200, 'the old rules stay in force')
      assert.equal(await statusOf(`${gateway.url}/api/x`, { method: 'POST' }), 401)
    })

    it('counts outcomes per rule and action in the metrics', async () => {
      await statusOf(`${gateway.url}/api/x`)
      await statusOf(`${gateway.url}/api/y`)
      const text = await (await fetch(gateway.metricsUrl)).text()
      assert.match(text, /^wsds_policy_decisions_total\{[^}]*rule="open-x",action="allow",mode="enforce"[^}]*\} [1-9]\d*$/m)
      assert.match(text, /^wsds_policy_decisions_total\{[^}]*rule="\(default\)",action="verify",mode="enforce"[^}]*\} [1-9]\d*$/m)
      assert.match(text, /^wsds_auth_decisions_total\{[^}]*result="allow:policy",mode="enforce"[^}]*\} [1-9]\d*$/m)
    })
  })
})

describe('monitor mode with rules', () => {
  let echo: Awaited<ReturnType<typeof startEcho>>
  let gateway: TestServer
  before(async () => {
    echo = await startEcho()
    gateway = await startTestServer({ policyFile: writePolicyFile(), upstream: echo.url, mode: 'monitor' })
  })
  after(async () => {
    await gateway?.close()
    echo?.server.closeAllConnections()
    echo?.server.close()
  })

  it('blocks nothing and labels a deny rule with X-WSDS-Verdict and X-WSDS-Rule', async () => {
    const res = await fetch(`${gateway.url}/api/admin/users`)
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { verdict: 'deny:policy', rule: 'admin' })
  })

  it('labels an allow rule, and an unmatched request as the WSDS check would decide it', async () => {
    assert.deepEqual(await (await fetch(`${gateway.url}/api/health`)).json(), { verdict: 'allow:policy', rule: 'health-probe' })
    assert.deepEqual(await (await fetch(`${gateway.url}/api/other`)).json(), { verdict: 'deny:missing', rule: null })
  })

  it('does not let a client label itself', async () => {
    const res = await fetch(`${gateway.url}/api/other`, { headers: { 'x-wsds-rule': 'admin', 'x-wsds-verdict': 'allow' } })
    assert.deepEqual(await res.json(), { verdict: 'deny:missing', rule: null })
  })
})

describe('forward auth without X-Forwarded-Uri', () => {
  it('warns once that path rules cannot match, and still decides', async () => {
    const lines: string[] = []
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) })
    const gateway = await startTestServer({ policyFile: writePolicyFile() }, { logger: pino({ level: 'info' }, sink) })
    try {
      assert.equal(await statusOf(`${gateway.url}/wsds/auth`), 401)
      assert.equal(await statusOf(`${gateway.url}/wsds/auth`), 401)
      assert.equal(await statusOf(`${gateway.url}/wsds/auth`, { headers: { 'x-forwarded-uri': '/api/health', 'x-forwarded-method': 'GET' } }), 204)
      assert.equal(lines.filter((l) => l.includes('"event":"policy-no-forwarded-uri"')).length, 1)
    } finally {
      await gateway.close()
    }
  })
})

describe('createFront with a policy', () => {
  const sha = (t: string) => createHash('sha256').update(t).digest('hex')
  const frontWith = (rules: unknown, extra: object = {}) =>
    createFront({ authenticator: createAuthenticator({ store: createMemoryStore() }), policy: { current: compilePolicy(rules) }, ...extra })

  it('never answers from the id cache while rules are in force (they look at more than the id)', () => {
    const front = frontWith({ rules: [{ name: 'a', match: { path: '/x' }, action: 'deny' }] })
    assert.equal(front.decideCached('AAAAAAAAAAAAAAAAAAAAAA'), undefined)
  })

  it('hashes tokens with Web Crypto when no sha256 is given, and with the given one otherwise', async () => {
    const rules = { rules: [{ name: 'svc', match: { token_sha256: [sha('s3cret')] }, action: 'allow' }] }
    const web = frontWith(rules)
    assert.equal((await web.decide({ connectionId: undefined, serviceToken: 's3cret' })).verdict, 'allow:policy')
    assert.equal((await web.decide({ connectionId: undefined, serviceToken: 's3cret!' })).verdict, 'deny:missing')
    let calls = 0
    const injected = frontWith(rules, { sha256: (d: Uint8Array) => (calls++, createHash('sha256').update(d).digest()) })
    assert.equal((await injected.decide({ connectionId: undefined, serviceToken: 's3cret' })).verdict, 'allow:policy')
    assert.equal((await injected.decide({ connectionId: undefined, serviceToken: 's3cret' })).verdict, 'allow:policy')
    assert.equal(calls, 1, 'a repeated token is hashed once')
  })

  it('a deny rule answers 403 {"error":"forbidden"} and names no rule to the client', async () => {
    const front = frontWith({ rules: [{ name: 'admin', match: { path: '/admin/**' }, action: 'deny' }] })
    const d = await front.decide({ connectionId: undefined, target: '/admin/x', method: 'GET' })
    assert.deepEqual({ pass: d.pass, status: d.status, body: d.body, headers: d.headers }, { pass: false, status: 403, body: '{"error":"forbidden"}', headers: {} })
    assert.deepEqual(front.ruleDecisions.get('admin'), { allow: 0, deny: 1, verify: 0 })
  })

  it('applies default: allow and default: deny to unmatched requests', async () => {
    const open = frontWith({ rules: [], default: 'allow' })
    assert.equal((await open.decide({ connectionId: undefined })).verdict, 'allow:policy')
    const shut = frontWith({ rules: [], default: 'deny' })
    const d = await shut.decide({ connectionId: undefined })
    assert.equal(d.status, 403)
    assert.deepEqual(shut.ruleDecisions.get('(default)'), { allow: 0, deny: 1, verify: 0 })
  })
})

describe('wsds policy', () => {
  const sha = (t: string) => createHash('sha256').update(t).digest('hex')
  const run = (args: string[], stdin?: string) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'policy', ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d) => (stdout += d))
      child.stderr.on('data', (d) => (stderr += d))
      child.on('exit', (code) => done({ code, stdout, stderr }))
      child.stdin.end(stdin ?? '')
    })

  it('check prints what each rule matches, in order, and the default', async () => {
    const { code, stdout } = await run(['check', writePolicyFile()])
    assert.equal(code, 0)
    const lines = stdout.trim().split('\n')
    assert.match(lines[0]!, /5 rule\(s\), first match wins/)
    assert.match(lines[1]!, /1\. deny\s+admin: path \/api\/admin\/\*\*/)
    assert.match(lines[2]!, /2\. allow\s+health-probe: path \/api\/health and method GET\|HEAD/)
    assert.match(lines[3]!, /mobile-app: service token with SHA-256/)
    assert.match(lines[4]!, /partner: client in 203\.0\.113\.0\/24 or 2001:db8:0:0:0:0:0:0\/32/)
    assert.match(lines[6]!, /verify\s+anything else \(default\)/)
  })

  it('check exits 2 naming the rule and field of a bad file', async () => {
    const { code, stderr } = await run(['check', writePolicyFile(BAD_RULE)])
    assert.equal(code, 2)
    assert.match(stderr, /rule #1 "partner": match\.cidr\[0\]/)
  })

  it('hash-token reads the token from stdin and prints the token_sha256 line', async () => {
    const { code, stdout } = await run(['hash-token'], 'my-service-token\n')
    assert.equal(code, 0)
    assert.equal(stdout, `token_sha256: [${sha('my-service-token')}]\n`)
    assert.ok(POLICY_YAML.includes('token_sha256: ['), 'the line pastes into a rules file as PROTOCOL.md writes it')
  })

  it('hash-token refuses a token on the command line and an empty stdin', async () => {
    const argv = await run(['hash-token', 'my-service-token'])
    assert.equal(argv.code, 2)
    assert.match(argv.stderr, /stdin/)
    assert.doesNotMatch(argv.stdout, /[0-9a-f]{64}/)
    const empty = await run(['hash-token'], '')
    assert.equal(empty.code, 2)
  })
})
