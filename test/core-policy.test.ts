import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { BlockList, isIPv6 } from 'node:net'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import type { AccessRequest } from '../src/core/access.ts'
import { isWsdsError } from '../src/core/errors.ts'
import {
  cidrContains,
  compileGlob,
  compilePolicy,
  parseAddress,
  parseCidr,
  parsePolicy,
  pathOfTarget,
  serviceTokenFrom,
} from '../src/core/policy.ts'

const sha = (token: string) => createHash('sha256').update(token).digest()
const hex = (token: string) => sha(token).toString('hex')

const req = (over: Partial<AccessRequest> = {}): AccessRequest => ({ connectionId: undefined, method: 'GET', target: '/api/x', ...over })

function throwsPolicy(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isWsdsError(err, 'ERR_POLICY'), `ERR_POLICY expected, got ${String(err)}`)
    for (const f of fragments) assert.ok(err.message.includes(f), `message ${JSON.stringify(err.message)} should mention ${JSON.stringify(f)}`)
    return true
  })
}

describe('parsePolicy', () => {
  it('accepts the file of PROTOCOL.md "Policy rules" and defaults to verify', () => {
    const spec = parsePolicy({
      rules: [{ name: 'health-probe', match: { path: '/api/health', methods: ['GET', 'HEAD'], cidr: ['10.0.0.0/8'], token_sha256: [hex('t')] }, action: 'allow' }],
      default: 'verify',
    })
    assert.equal(spec.rules.length, 1)
    assert.deepEqual(spec.rules[0]!.match.path, ['/api/health'])
    assert.equal(parsePolicy({ rules: [] }).default, 'verify')
    assert.equal(parsePolicy({}).default, 'verify')
  })

  it('names the rule by name and the field when a condition is bad', () => {
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'probe', match: { cidr: ['10.0.0.0/33'] }, action: 'allow' }] }), 'rule #0 "probe"', 'match.cidr[0]')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'probe', match: { methods: ['GET POST'] }, action: 'allow' }] }), '"probe"', 'match.methods[0]')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'probe', match: { token_sha256: ['abc'] }, action: 'allow' }] }), '"probe"', 'match.token_sha256[0]', '64 hex')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'probe', match: { path: 'api/x' }, action: 'allow' }] }), '"probe"', 'match.path', 'start with /')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'probe', match: { path: '/a**b' }, action: 'allow' }] }), 'match.path', '**')
  })

  it('names the rule by index when it has no usable name', () => {
    throwsPolicy(() => parsePolicy({ rules: [{ match: { path: '/x' }, action: 'allow' }] }), 'rule #0', 'name', 'required')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'ok', match: { path: '/x' }, action: 'allow' }, { name: 'bad name!', match: { path: '/x' }, action: 'allow' }] }), 'rule #1', 'name')
    throwsPolicy(() => parsePolicy({ rules: ['allow everything'] }), 'rule #0', 'mapping')
  })

  it('refuses duplicate names, unknown fields, missing conditions and bad actions', () => {
    throwsPolicy(
      () => parsePolicy({ rules: [{ name: 'a', match: { path: '/x' }, action: 'allow' }, { name: 'a', match: { path: '/y' }, action: 'deny' }] }),
      'rule #1 "a"',
      'not unique',
    )
    // A misspelt condition would otherwise widen the rule to every request.
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'a', match: { paths: '/x' }, action: 'allow' }] }), '"a"', 'match.paths', 'not a condition')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'a', match: { path: '/x' }, action: 'allow', when: 1 }] }), '"a"', 'when')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'a', match: {}, action: 'allow' }] }), '"a"', 'match', 'at least one')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'a', action: 'allow' }] }), '"a"', 'match')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'a', match: { path: '/x' }, action: 'permit' }] }), '"a"', 'action', 'allow, deny or verify')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'a', match: { path: '/x' } }] }), '"a"', 'action', 'required')
    throwsPolicy(() => parsePolicy({ rules: [{ name: 'a', match: { methods: [] }, action: 'allow' }] }), '"a"', 'match.methods', 'empty')
    throwsPolicy(() => parsePolicy({ rules: [], default: 'block' }), 'policy.default')
    throwsPolicy(() => parsePolicy({ rule: [] }), 'policy.rule', 'not a field')
    throwsPolicy(() => parsePolicy({ rules: {} }), 'policy.rules', 'list')
    throwsPolicy(() => parsePolicy(null), 'empty')
    throwsPolicy(() => parsePolicy([]), 'mapping')
  })

  it('takes a single string where a list is expected', () => {
    const spec = parsePolicy({ rules: [{ name: 'a', match: { methods: 'post', cidr: '::1' }, action: 'deny' }] })
    assert.deepEqual(spec.rules[0]!.match.methods, ['POST'])
    assert.deepEqual(spec.rules[0]!.match.cidr, ['::1'])
  })
})

describe('path globs', () => {
  const cases: [string, string, boolean][] = [
    ['/api/health', '/api/health', true],
    ['/api/health', '/api/health/', false],
    ['/api/health', '/api/healthz', false],
    ['/api/*', '/api/x', true],
    ['/api/*', '/api/x/y', false],
    ['/api/*', '/api/', false],
    ['/api/*', '/api', false],
    ['/api/*/status', '/api/v1/status', true],
    ['/api/*/status', '/api/v1/v2/status', false],
    ['/api/*.json', '/api/a.json', true],
    ['/api/*.json', '/api/a.jsonx', false],
    ['/api/v*', '/api/v1', true],
    ['/api/**', '/api', true],
    ['/api/**', '/api/', true],
    ['/api/**', '/api/a/b/c', true],
    ['/api/**', '/apix', false],
    ['/api/**/edit', '/api/edit', true],
    ['/api/**/edit', '/api/a/b/edit', true],
    ['/api/**/edit', '/api/a/b/edit/x', false],
    ['/**', '/anything/at/all', true],
    ['/**/admin/**', '/api/v1/admin/users', true],
    ['/**/admin/**', '/api/v1/administrator', false],
  ]
  for (const [pattern, path, expected] of cases) {
    it(`${pattern} ${expected ? 'matches' : 'does not match'} ${path}`, () => {
      assert.equal(compileGlob(pattern)(path), expected)
    })
  }

  it('matches the path without its query', () => {
    assert.equal(pathOfTarget('/api/health?x=/admin'), '/api/health')
    const policy = compilePolicy({ rules: [{ name: 'h', match: { path: '/api/health' }, action: 'allow' }] })
    assert.equal(policy.evaluate(req({ target: '/api/health?verbose=1' })).action, 'allow')
    assert.equal(policy.evaluate(req({ target: '/api/other?p=/api/health' })).action, 'verify')
  })

  it('a glob without wildcards matches exactly what a segment-by-segment glob would (property)', () => {
    const segment = fc.stringMatching(/^[a-z0-9.%-]{0,6}$/)
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 5 }), fc.array(segment, { minLength: 1, maxLength: 5 }), (a, b) => {
        const pattern = '/' + a.join('/')
        const path = '/' + b.join('/')
        assert.equal(compileGlob(pattern)(path), pattern === path)
        // `/**` matches every path; `/` + `*` per segment matches only as many non-empty segments.
        assert.equal(compileGlob('/**')(path), true)
        const stars = '/' + b.map(() => '*').join('/')
        assert.equal(compileGlob(stars)(path), b.every((s) => s !== ''))
      }),
    )
  })

  it('a pattern matches every path built from it by filling its wildcards (property)', () => {
    const lit = fc.stringMatching(/^[a-z0-9]{1,4}$/)
    const piece = fc.oneof(
      lit.map((s) => ({ glob: s, fill: fc.constant(s) })),
      fc.constant({ glob: '*', fill: lit }),
      fc.constant({ glob: '**', fill: fc.array(lit, { maxLength: 3 }).map((xs) => xs.join('/')) }),
    )
    fc.assert(
      fc.property(
        fc.array(piece, { minLength: 1, maxLength: 5 }).chain((pieces) =>
          fc.tuple(fc.constant(pieces.map((p) => p.glob)), fc.tuple(...pieces.map((p) => p.fill))),
        ),
        ([globs, fills]) => {
          const pattern = '/' + globs.join('/')
          const path = ('/' + fills.filter((f) => f !== '').join('/')).replace(/\/+$/, '') || '/'
          if (fills.every((f, i) => f !== '' || globs[i] === '**')) assert.ok(compileGlob(pattern)(path), `${pattern} should match ${path}`)
        },
      ),
    )
  })
})

describe('addresses and CIDR blocks', () => {
  const contains = (cidr: string, address: string) => {
    const block = parseCidr(cidr)
    const addr = parseAddress(address)
    assert.ok(block && addr, `${cidr} / ${address} should parse`)
    return cidrContains(block, addr)
  }

  it('matches IPv4 blocks, host bits cleared, bare address = /32', () => {
    assert.equal(contains('10.0.0.0/8', '10.255.1.2'), true)
    assert.equal(contains('10.0.0.0/8', '11.0.0.1'), false)
    assert.equal(contains('10.1.2.3/8', '10.9.9.9'), true)
    assert.equal(contains('192.168.1.7', '192.168.1.7'), true)
    assert.equal(contains('192.168.1.7', '192.168.1.8'), false)
    assert.equal(contains('0.0.0.0/0', '203.0.113.9'), true)
    assert.equal(contains('172.16.0.0/12', '172.31.255.255'), true)
    assert.equal(contains('172.16.0.0/12', '172.32.0.0'), false)
  })

  it('matches IPv6 blocks, with zones ignored and :: forms', () => {
    assert.equal(contains('2001:db8::/32', '2001:db8:1::5'), true)
    assert.equal(contains('2001:db8::/32', '2001:db9::5'), false)
    assert.equal(contains('::1', '::1'), true)
    assert.equal(contains('::1/128', '::2'), false)
    assert.equal(contains('fe80::/10', 'fe80::1%eth0'), true)
    assert.equal(contains('2001:db8:0:0:0:0:0:0/64', '2001:DB8::abcd'), true)
    assert.equal(contains('::/0', '2001:db8::1'), true)
  })

  it('an IPv4 block matches the IPv4-mapped IPv6 form a dual-stack socket reports, and not other IPv6', () => {
    assert.equal(contains('10.0.0.0/8', '::ffff:10.1.2.3'), true)
    assert.equal(contains('10.0.0.0/8', '::ffff:a01:203'), true)
    assert.equal(contains('10.0.0.0/8', '::ffff:11.1.2.3'), false)
    assert.equal(contains('10.0.0.0/8', '::a01:203'), false)
    assert.equal(contains('::ffff:10.0.0.0/104', '10.2.3.4'), true)
    // 0.0.0.0/0 is every IPv4 address, not every address.
    assert.equal(contains('0.0.0.0/0', '2001:db8::1'), false)
  })

  it('refuses what is not an address', () => {
    for (const bad of ['10.0.0', '10.0.0.256', '010.0.0.1', '1.2.3.4.5', '1:2:3:4:5:6:7:8:9', '1::2::3', '12345::', 'g::1', '::1/129', '10.0.0.0/33', '10.0.0.0/-1', '10.0.0.0/08', 'localhost', '', '1:2:3:4:5:6:7::8:9']) {
      assert.equal(parseCidr(bad), null, `${bad} should be refused`)
    }
  })

  it('agrees with node:net BlockList on random addresses and blocks (property)', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'))
    const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((w) => w.map((x) => x.toString(16)).join(':'))
    fc.assert(
      fc.property(fc.oneof(v4, v6), fc.oneof(v4, v6), fc.nat(128), (net, addr, rawBits) => {
        const v6net = isIPv6(net)
        const bits = v6net ? rawBits : rawBits % 33
        const list = new BlockList()
        const family = v6net ? 'ipv6' : 'ipv4'
        list.addSubnet(net, bits, family)
        const expected = list.check(addr, isIPv6(addr) ? 'ipv6' : 'ipv4')
        assert.equal(cidrContains(parseCidr(`${net}/${bits}`)!, parseAddress(addr)!), expected, `${net}/${bits} vs ${addr}`)
      }),
      { numRuns: 2000 },
    )
  })

  it('reads compressed IPv6 the way node:net does (property)', () => {
    const v6 = fc.array(fc.oneof(fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 })
    fc.assert(
      fc.property(v6, (words) => {
        const full = words.map((x) => x.toString(16)).join(':')
        // Compress the longest run of zeros, as an address printer would.
        const compressed = full.replace(/(^|:)0(:0)+(:|$)/, '::')
        assert.deepEqual(parseAddress(compressed), parseAddress(full), `${compressed} vs ${full}`)
      }),
    )
  })
})

describe('compilePolicy', () => {
  const policy = compilePolicy({
    rules: [
      { name: 'admin', match: { path: '/api/admin/**' }, action: 'deny' },
      { name: 'probe', match: { path: '/api/health', methods: ['GET', 'HEAD'] }, action: 'allow' },
      { name: 'partner', match: { cidr: ['203.0.113.0/24', '2001:db8::/32'] }, action: 'allow' },
      { name: 'mobile', match: { token_sha256: [hex('mobile-token-1'), hex('mobile-token-2')] }, action: 'allow' },
      { name: 'partner-writes', match: { cidr: '198.51.100.0/24', methods: 'POST' }, action: 'verify' },
      { name: 'everything-from-partner-net', match: { cidr: '198.51.100.0/24' }, action: 'allow' },
    ],
  })

  it('first match wins', () => {
    // The partner's address would be allowed, but the admin rule comes first.
    assert.deepEqual(policy.evaluate(req({ target: '/api/admin/users', remoteAddress: '203.0.113.5' })), { action: 'deny', rule: 'admin' })
    assert.deepEqual(policy.evaluate(req({ method: 'POST', remoteAddress: '198.51.100.1' })), { action: 'verify', rule: 'partner-writes' })
    assert.deepEqual(policy.evaluate(req({ method: 'GET', remoteAddress: '198.51.100.1' })), { action: 'allow', rule: 'everything-from-partner-net' })
  })

  it('every condition of a rule must hold', () => {
    assert.equal(policy.evaluate(req({ target: '/api/health', method: 'GET' })).rule, 'probe')
    assert.equal(policy.evaluate(req({ target: '/api/health', method: 'head' })).rule, 'probe')
    assert.equal(policy.evaluate(req({ target: '/api/health', method: 'POST' })).rule, null)
    assert.equal(policy.evaluate(req({ target: '/api/health', method: undefined })).rule, null)
    assert.equal(policy.evaluate(req({ target: undefined, method: 'GET' })).rule, null)
  })

  it('matches client addresses of both families and none when the address is missing or garbage', () => {
    assert.equal(policy.evaluate(req({ remoteAddress: '203.0.113.200' })).rule, 'partner')
    assert.equal(policy.evaluate(req({ remoteAddress: '::ffff:203.0.113.200' })).rule, 'partner')
    assert.equal(policy.evaluate(req({ remoteAddress: '2001:db8:ffff::1' })).rule, 'partner')
    assert.equal(policy.evaluate(req({ remoteAddress: '2001:db9::1' })).rule, null)
    assert.equal(policy.evaluate(req({ remoteAddress: undefined })).rule, null)
    assert.equal(policy.evaluate(req({ remoteAddress: 'not-an-ip' })).rule, null)
  })

  it('matches a service token by its SHA-256, any of the listed ones', () => {
    assert.equal(policy.evaluate(req(), sha('mobile-token-1')).rule, 'mobile')
    assert.equal(policy.evaluate(req(), sha('mobile-token-2')).rule, 'mobile')
    assert.equal(policy.evaluate(req(), sha('mobile-token-3')).rule, null)
    assert.equal(policy.evaluate(req(), undefined).rule, null)
    assert.equal(policy.usesTokens, true)
  })

  it('unmatched requests get the default, verify unless the file says otherwise', () => {
    assert.deepEqual(policy.evaluate(req({ target: '/api/other' })), { action: 'verify', rule: null })
    const closed = compilePolicy({ rules: [{ name: 'probe', match: { path: '/health' }, action: 'allow' }], default: 'deny' })
    assert.deepEqual(closed.evaluate(req({ target: '/other' })), { action: 'deny', rule: null })
    assert.equal(compilePolicy({ rules: [] }).active, false)
    assert.equal(compilePolicy({ rules: [], default: 'allow' }).active, true)
  })

  it('matches exactly as a plain re-implementation of the rules does (property)', () => {
    const paths = ['/api/a', '/api/b/c', '/api/admin/x', '/health']
    const globs = ['/api/*', '/api/**', '/health', '/api/admin/**', '/**/c']
    const methods = ['GET', 'POST', 'HEAD']
    const nets = ['10.0.0.0/8', '10.1.0.0/16', '2001:db8::/32']
    const addrs = ['10.1.2.3', '10.2.0.1', '2001:db8::9', '192.0.2.1']
    const tokens = ['t1', 't2', 't3']
    const cond = fc.record(
      {
        path: fc.constantFrom(...globs),
        methods: fc.subarray(methods, { minLength: 1 }),
        cidr: fc.subarray(nets, { minLength: 1 }),
        token_sha256: fc.subarray(tokens, { minLength: 1 }),
      },
      { requiredKeys: [] },
    ).filter((m) => Object.keys(m).length > 0)
    const rule = fc.record({ match: cond, action: fc.constantFrom('allow', 'deny', 'verify') })
    const request = fc.record({
      target: fc.constantFrom(...paths),
      method: fc.constantFrom(...methods),
      remoteAddress: fc.constantFrom(...addrs),
      token: fc.option(fc.constantFrom(...tokens)),
    })
    const inNet = (net: string, addr: string) => {
      const [base, bits] = net.split('/')
      const list = new BlockList()
      list.addSubnet(base!, Number(bits), base!.includes(':') ? 'ipv6' : 'ipv4')
      return list.check(addr, addr.includes(':') ? 'ipv6' : 'ipv4')
    }
    fc.assert(
      fc.property(fc.array(rule, { maxLength: 6 }), fc.constantFrom('allow', 'deny', 'verify'), request, (rules, def, r) => {
        const named = rules.map((x, i) => ({ name: `r${i}`, action: x.action, match: { ...x.match, ...(x.match.token_sha256 ? { token_sha256: x.match.token_sha256.map(hex) } : {}) } }))
        const p = compilePolicy({ rules: named, default: def })
        const got = p.evaluate({ connectionId: undefined, target: r.target, method: r.method, remoteAddress: r.remoteAddress }, r.token === null ? undefined : sha(r.token))
        const expected = rules.findIndex((x) => {
          const m = x.match
          if (m.path !== undefined && !compileGlob(m.path)(r.target)) return false
          if (m.methods !== undefined && !m.methods.includes(r.method)) return false
          if (m.cidr !== undefined && !m.cidr.some((n) => inNet(n, r.remoteAddress))) return false
          if (m.token_sha256 !== undefined && (r.token === null || !m.token_sha256.includes(r.token))) return false
          return true
        })
        assert.deepEqual(got, expected === -1 ? { action: def, rule: null } : { action: rules[expected]!.action, rule: `r${expected}` })
      }),
      { numRuns: 500 },
    )
  })

  it('never throws on any decoded data: it compiles or fails with ERR_POLICY (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (data) => {
        try {
          compilePolicy(data)
        } catch (err) {
          assert.ok(isWsdsError(err, 'ERR_POLICY'), String(err))
        }
      }),
      { numRuns: 500 },
    )
    const ruleish = fc.record({ name: fc.oneof(fc.string(), fc.constant('a')), match: fc.dictionary(fc.constantFrom('path', 'methods', 'cidr', 'token_sha256', 'x'), fc.jsonValue()), action: fc.jsonValue() })
    fc.assert(
      fc.property(fc.array(ruleish, { maxLength: 4 }), (rules) => {
        try {
          compilePolicy({ rules })
        } catch (err) {
          assert.ok(isWsdsError(err, 'ERR_POLICY'), String(err))
        }
      }),
      { numRuns: 500 },
    )
  })
})

describe('serviceTokenFrom', () => {
  it('reads X-WSDS-Service-Token first, then Authorization: Bearer, any case of the scheme', () => {
    assert.equal(serviceTokenFrom('abc', 'Bearer other'), 'abc')
    assert.equal(serviceTokenFrom(undefined, 'Bearer abc'), 'abc')
    assert.equal(serviceTokenFrom(undefined, 'bearer  abc '), 'abc')
    assert.equal(serviceTokenFrom('', 'BEARER abc'), 'abc')
    assert.equal(serviceTokenFrom(undefined, 'Basic YWJj'), undefined)
    assert.equal(serviceTokenFrom(undefined, 'Bearer '), undefined)
    assert.equal(serviceTokenFrom(null, null), undefined)
  })
})
