/**
 * The SDK's parts that run in Node, each on its own (src/client/*.ts): message dispatch, the
 * reconnect schedule, options, challenge answering (re-challenges included), binding keys and
 * the signature header against the gateway's own checks, events and close errors. connect()
 * against a real gateway is test/client.test.ts; in browsers, test/browser*.test.ts.
 */
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { describe, it } from 'node:test'
import { checkRequestSignature, parseBindOffer } from '../src/core/binding.ts'
import { WsdsError } from '../src/core/errors.ts'
import type { AnswerMessage, ChallengeMessage, HelloMessage } from '../src/core/protocol.ts'
import { verifyPow } from '../src/core/pow.ts'
import { createNodeBinder, nodeRequestMac } from '../src/crypto/node-binding.ts'
import { nodeSha256 } from '../src/crypto/node-sha256.ts'
import { deriveRequestKey, offerBinding, signRequest } from '../src/client/binding.ts'
import { answerChallenge, evaluateChallenge } from '../src/client/challenge.ts'
import { dispatchFrame, type FrameHandlers } from '../src/client/frames.ts'
import { readOptions, reconnectDelay, reconnectPolicy } from '../src/client/options.ts'
import { closeError, createEvents, createWaiters, isPermanent } from '../src/client/session.ts'
import { sendHello } from '../src/client/connection.ts'
import type { WebSocketConstructor, WebSocketLike } from '../src/client/types.ts'

const subtle = globalThis.crypto.subtle

/** Feeds `data` to the dispatcher; returns the one handler call it made, if any. */
function dispatch(data: unknown): [string, ...unknown[]] | null {
  let call: [string, ...unknown[]] | null = null
  const record =
    (name: string) =>
    (...args: unknown[]) => {
      assert.equal(call, null, 'one handler call per frame')
      call = [name, ...args]
    }
  const handlers: FrameHandlers = { connection: record('connection'), challenge: record('challenge'), verified: record('verified'), rejected: record('rejected') }
  dispatchFrame(data, handlers)
  return call
}

describe('message dispatch', () => {
  it('hands a connection frame its id, and ignores one without a string id', () => {
    assert.deepEqual(dispatch('{"type":"connection","connectionId":"abc"}'), ['connection', 'abc'])
    assert.equal(dispatch('{"type":"connection","connectionId":7}'), null)
  })

  it('hands over a well-formed challenge of either form, and drops a malformed pow from it', () => {
    const code = dispatch('{"type":"challenge","token":"t1","expiresInMs":9000,"code":"() => 1","pow":{"alg":"md5","bits":4}}')
    assert.equal(code?.[0], 'challenge')
    assert.equal((code![1] as ChallengeMessage).pow, undefined)
    const program = dispatch('{"type":"challenge","form":"program","token":"t2","expiresInMs":9000,"program":{},"pow":{"alg":"sha256","bits":3}}')
    assert.deepEqual((program![1] as ChallengeMessage).pow, { alg: 'sha256', bits: 3 })
  })

  it('ignores challenges without a token, a deadline, their form\'s body, or with an unknown form', () => {
    assert.equal(dispatch('{"type":"challenge","expiresInMs":9000,"code":"x"}'), null)
    assert.equal(dispatch('{"type":"challenge","token":"t","code":"x"}'), null)
    assert.equal(dispatch('{"type":"challenge","token":"t","expiresInMs":1,"form":"program","code":"x"}'), null)
    assert.equal(dispatch('{"type":"challenge","token":"t","expiresInMs":1,"form":"wasm","code":"x"}'), null)
    assert.equal(dispatch('{"type":"challenge","token":"t","expiresInMs":1}'), null)
  })

  it('hands a verified frame its id and the gateway\'s binding key when it is a string', () => {
    assert.deepEqual(dispatch('{"type":"verified","connectionId":"abc","bind":{"key":"K"}}'), ['verified', 'abc', 'K'])
    assert.deepEqual(dispatch('{"type":"verified","connectionId":"abc"}'), ['verified', 'abc', undefined])
    assert.deepEqual(dispatch('{"type":"verified","connectionId":"abc","bind":{"key":5}}'), ['verified', 'abc', undefined])
    assert.equal(dispatch('{"type":"verified"}'), null)
  })

  it('hands a rejected frame its reason, unknown reasons included', () => {
    assert.deepEqual(dispatch('{"type":"rejected","reason":"wrong-answer"}'), ['rejected', 'wrong-answer'])
    assert.deepEqual(dispatch('{"type":"rejected","reason":"from-a-newer-gateway"}'), ['rejected', 'from-a-newer-gateway'])
    assert.equal(dispatch('{"type":"rejected"}'), null)
  })

  it('ignores binary data, broken JSON, JSON that is no object, and the frames that need nothing', () => {
    for (const data of [Buffer.from('{"type":"connection","connectionId":"a"}'), '{"type":', 'null', '42', '"connection"', '{"type":"pong"}', '{"type":"error","code":"bad-message","message":"m"}', '{"type":"whatever"}']) {
      assert.equal(dispatch(data), null, String(data))
    }
  })
})

describe('the reconnect schedule', () => {
  it('starts at minDelayMs and doubles per failed attempt up to maxDelayMs, before jitter', () => {
    const policy = reconnectPolicy(undefined)!
    assert.deepEqual(policy, { minDelayMs: 500, maxDelayMs: 30000, maxAttempts: Infinity })
    // random 1 (the top of the range, exclusive in Math.random) gives the base itself.
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 20].map((n) => reconnectDelay(policy, n, 1)), [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000])
  })

  it('jitters each delay into [base/2, base)', () => {
    const policy = reconnectPolicy({ minDelayMs: 1000, maxDelayMs: 1000 })!
    assert.equal(reconnectDelay(policy, 0, 0), 500)
    assert.equal(reconnectDelay(policy, 0, 0.5), 750)
    for (let i = 0; i < 100; i++) {
      const d = reconnectDelay(policy, 3, Math.random())
      assert.ok(d >= 500 && d < 1000, String(d))
    }
  })

  it('is off with reconnect: false, and refuses bounds that make no schedule', () => {
    assert.equal(reconnectPolicy(false), null)
    assert.throws(() => reconnectPolicy({ minDelayMs: -1 }), { code: 'ERR_CONFIG', message: /reconnect\.minDelayMs/ })
    assert.throws(() => reconnectPolicy({ minDelayMs: 5000, maxDelayMs: 1000 }), { code: 'ERR_CONFIG', message: /reconnect\.maxDelayMs/ })
    assert.throws(() => reconnectPolicy({ maxAttempts: -1 }), { code: 'ERR_CONFIG', message: /reconnect\.maxAttempts/ })
  })
})

describe('options', () => {
  const Socket = class {} as unknown as WebSocketConstructor
  const base = { url: 'ws://gw.test/wsds', keys: ['k1', 'k2'], WebSocket: Socket }

  it('applies the defaults: program first, 25 s pings, 15 s handshake deadline, the connectionId header', () => {
    const s = readOptions(base)
    assert.equal(s.url, 'ws://gw.test/wsds')
    assert.deepEqual(s.forms, ['program', 'code'])
    assert.equal(s.pingIntervalMs, 25000)
    assert.equal(s.handshakeTimeoutMs, 15000)
    assert.equal(s.header, 'connectionId')
    assert.ok(Object.isFrozen(s.keys))
    assert.deepEqual(readOptions({ ...base, evaluate: () => () => 1 }).forms, ['code', 'program'])
    assert.equal(readOptions({ ...base, bind: false }).subtle, undefined)
  })

  it('names the bad option and value in ERR_CONFIG, and never the keys', () => {
    assert.throws(() => readOptions({ ...base, url: 'ftp://x' }), { code: 'ERR_CONFIG', message: /^url: / })
    assert.throws(() => readOptions({ ...base, header: 'bad header' }), { code: 'ERR_CONFIG', message: /^header: bad value "bad header"/ })
    assert.throws(() => readOptions({ ...base, forms: ['wasm' as 'code'] }), { code: 'ERR_CONFIG', message: /^forms: / })
    assert.throws(() => readOptions({ ...base, pingIntervalMs: 2 ** 31 }), { code: 'ERR_CONFIG', message: /^pingIntervalMs: / })
    assert.throws(() => readOptions({ ...base, keys: ['secret-key', ''] }), (err: WsdsError) => err.code === 'ERR_CONFIG' && !err.message.includes('secret-key'))
  })
})

describe('challenge answering', () => {
  const challenge = (token: string, over: Partial<ChallengeMessage> = {}): ChallengeMessage =>
    ({ type: 'challenge', token, expiresInMs: 9000, code: '({ keys }) => keys.join("+")', ...over }) as ChallengeMessage
  const settings = { keys: ['a', 'b'], evaluate: (code: string) => new Function('return (' + code + ')')() }

  function answering(latest: () => string, live = () => true) {
    const sent: AnswerMessage[] = []
    const failures: WsdsError[] = []
    return { sent, failures, ctx: { live, latest: (token: string) => token === latest(), send: (a: AnswerMessage) => void sent.push(a), fail: (e: WsdsError) => void failures.push(e) } }
  }

  it('sends the code form\'s result under the challenge\'s token', async () => {
    const { sent, ctx } = answering(() => 't1')
    await answerChallenge(challenge('t1'), settings, ctx)
    assert.deepEqual(sent, [{ action: 'answer', token: 't1', result: 'a+b', pow: undefined }])
  })

  it('sends null for a function that returns nothing, so the answer keeps its result field', async () => {
    const { sent, ctx } = answering(() => 't1')
    await answerChallenge(challenge('t1', { code: '() => undefined' }), settings, ctx)
    assert.equal(sent[0]!.result, null)
    assert.ok(JSON.stringify(sent[0]).includes('"result":null'))
  })

  it('answers only the latest challenge: one a re-challenge replaced gets no answer', async () => {
    let latest = 't1'
    const { sent, ctx } = answering(() => latest)
    const first = answerChallenge(challenge('t1', { code: 'async ({ keys }) => { await new Promise((r) => setTimeout(r, 20)); return keys[0] }' }), settings, ctx)
    latest = 't2'
    await answerChallenge(challenge('t2'), settings, ctx)
    await first
    assert.deepEqual(sent.map((a) => a.token), ['t2'])
  })

  it('gives up with ERR_CONFIG when the challenge cannot run, and stays quiet for a socket already gone', async () => {
    const broken = { ...settings, evaluate: () => { throw new EvalError('unsafe-eval refused') } }
    const live = answering(() => 't1')
    await answerChallenge(challenge('t1'), broken, live.ctx)
    assert.equal(live.failures[0]?.code, 'ERR_CONFIG')
    assert.match(live.failures[0]!.message, /code challenge failed/)
    assert.deepEqual(live.sent, [])
    const gone = answering(() => 't1', () => false)
    await answerChallenge(challenge('t1'), broken, gone.ctx)
    assert.deepEqual(gone.failures, [])
  })

  it('refuses a code that is no function, and a malformed program', async () => {
    await assert.rejects(evaluateChallenge(challenge('t', { code: '42' }), settings), TypeError)
    await assert.rejects(evaluateChallenge({ type: 'challenge', token: 't', expiresInMs: 1, form: 'program', program: { v: 99 } }, settings), /malformed program/)
  })

  it('adds a proof of work the gateway\'s own check accepts when the challenge asks for one', async () => {
    const { sent, ctx } = answering(() => 'tok-pow')
    await answerChallenge(challenge('tok-pow', { pow: { alg: 'sha256', bits: 6 } }), settings, ctx)
    assert.equal(sent.length, 1)
    assert.deepEqual(verifyPow('tok-pow', 6, sent[0]!.pow, nodeSha256).ok, true)
  })
})

describe('binding keys and the signature header', () => {
  const ID = 'conn-0123456789abcdef'

  async function bound() {
    const hello: HelloMessage = { action: 'hello', v: 1 }
    const keyPair = await offerBinding(subtle, hello)
    const clientKey = parseBindOffer(hello.bind)
    assert.ok(clientKey !== null, 'the gateway accepts the offer')
    const derived = createNodeBinder()(clientKey, ID)!
    const key = await deriveRequestKey(subtle, keyPair.privateKey, derived.serverKey, ID)
    return { key, requestKey: Buffer.from(derived.requestKey, 'base64url') }
  }

  it('derives the K_req the gateway derives: its own check accepts the SDK\'s signature', async () => {
    const { key, requestKey } = await bound()
    const now = Date.now()
    const header = await signRequest(subtle, key, ID, 'post', 'https://app.test/api/orders?x=1', now)
    const check = checkRequestSignature({ connectionId: ID, method: 'POST', target: '/api/orders?x=1', signature: header }, nodeRequestMac(requestKey), now, 30_000)
    assert.equal(check, 'ok')
    assert.equal(checkRequestSignature({ connectionId: ID, method: 'POST', target: '/api/orders?x=2', signature: header }, nodeRequestMac(requestKey), now, 30_000), 'bad-mac')
  })

  it('formats t=<ms>, s=<HMAC in unpadded base64url> over the target fetch sends', async () => {
    const raw = new Uint8Array(32).map((_, i) => i)
    const key = await subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
    const mac = (text: string) => createHmac('sha256', raw).update(text).digest('base64url')
    const t = 1_700_000_000_000
    // Fragment dropped, space percent-encoded, a bare `?` kept; get upper-cased, patch not (Fetch).
    assert.equal(await signRequest(subtle, key, ID, 'get', 'https://app.test/api/a b?#frag', t), `t=${t}, s=${mac(`wsds/1\n${t}\nGET\n/api/a%20b?\n${ID}`)}`)
    assert.equal(await signRequest(subtle, key, ID, 'patch', new URL('https://app.test/api/x?q=1'), t), `t=${t}, s=${mac(`wsds/1\n${t}\npatch\n/api/x?q=1\n${ID}`)}`)
    assert.match(await signRequest(subtle, key, ID, 'GET', 'https://app.test/', t), /^t=1700000000000, s=[A-Za-z0-9_-]{43}$/)
  })
})

describe('the handshake', () => {
  const socket = () => {
    const frames: unknown[] = []
    const ws = { readyState: 1, send: (text: string) => void frames.push(JSON.parse(text)) } as unknown as WebSocketLike
    return { ws, frames }
  }

  it('sends hello with the forms, the key set and a binding offer the gateway accepts, and keeps the key pair', async () => {
    const { ws, frames } = socket()
    const keyPair = await sendHello(ws, { forms: ['program', 'code'], keySet: 'ks-1', subtle }, () => true)
    assert.ok(keyPair !== null)
    const hello = frames[0] as HelloMessage
    assert.deepEqual({ ...hello, bind: undefined }, { action: 'hello', v: 1, forms: ['program', 'code'], keySet: 'ks-1', bind: undefined })
    assert.notEqual(parseBindOffer(hello.bind), null)
  })

  it('sends an unbound hello without WebCrypto, and nothing once the socket stopped being live', async () => {
    const unbound = socket()
    assert.equal(await sendHello(unbound.ws, { forms: ['code'], keySet: undefined, subtle: undefined }, () => true), null)
    assert.deepEqual(unbound.frames, [{ action: 'hello', v: 1, forms: ['code'] }])
    const gone = socket()
    assert.equal(await sendHello(gone.ws, { forms: ['code'], keySet: undefined, subtle }, () => false), null)
    assert.deepEqual(gone.frames, [])
  })
})

describe('waiting for verification', () => {
  it('settles ready and every waiter with the verified id', async () => {
    const waiters = createWaiters()
    const later = waiters.wait(null)
    waiters.settle('conn-1')
    assert.deepEqual(await Promise.all([waiters.ready, later]), ['conn-1', 'conn-1'])
  })

  it('rejects them all with the error that ended the session', async () => {
    const waiters = createWaiters()
    const later = waiters.wait(undefined)
    const error = new WsdsError('ERR_CLOSED', 'closed by close()')
    waiters.settle(error)
    await assert.rejects(waiters.ready, error)
    await assert.rejects(later, error)
  })

  it('lets a caller stop waiting through its AbortSignal, leaving the others waiting', async () => {
    const waiters = createWaiters()
    const controller = new AbortController()
    const aborted = waiters.wait(controller.signal)
    controller.abort(new Error('user navigated away'))
    await assert.rejects(aborted, /user navigated away/)
    await assert.rejects(waiters.wait(AbortSignal.abort(new Error('already'))), /already/)
    waiters.settle('conn-2')
    assert.equal(await waiters.ready, 'conn-2')
  })
})

describe('events and close errors', () => {
  it('calls every listener, reports one that throws, and stops calling one removed', () => {
    const events = createEvents()
    const seen: string[] = []
    const reported: unknown[] = []
    const original = globalThis.reportError
    globalThis.reportError = (error: unknown) => void reported.push(error)
    try {
      events.on('verified', () => {
        throw new Error('listener bug')
      })
      const off = events.on('verified', (id) => void seen.push(id))
      events.emit('verified', 'a')
      off()
      events.emit('verified', 'b')
    } finally {
      globalThis.reportError = original
    }
    assert.deepEqual(seen, ['a'])
    assert.equal(reported.length, 2)
    assert.throws(() => events.on('nope' as 'verified', () => {}), TypeError)
  })

  it('tells rejections a new connection would repeat from those it might not', () => {
    for (const reason of ['stale-keyset', 'unsupported-version', 'bad-domain', 'wrong-answer', 'bad-binding', 'binding-required'] as const) assert.ok(isPermanent(reason), reason)
    for (const reason of ['bad-token', 'timeout', 'unsupported-form', null] as const) assert.ok(!isPermanent(reason), String(reason))
  })

  it('names why a session ended: the rejection, a handshake timeout, a close before verification, or no connection at all', () => {
    const settings = { url: 'ws://gw.test/wsds', handshakeTimeoutMs: 15000 }
    assert.deepEqual(pick(closeError(settings, 4001, 'wrong-answer', true, false)), { code: 'wrong-answer', closeCode: 4001 })
    assert.deepEqual(pick(closeError(settings, 1000, 'from-a-newer-gateway' as 'timeout', true, false)), { code: 'ERR_CLOSED', closeCode: 1000 })
    assert.deepEqual(pick(closeError(settings, 1000, null, true, true)), { code: 'ERR_HANDSHAKE_TIMEOUT', closeCode: 1000 })
    assert.deepEqual(pick(closeError(settings, 1006, null, true, false)), { code: 'ERR_CLOSED', closeCode: 1006 })
    const never = closeError(settings, 1006, null, false, false)
    assert.deepEqual(pick(never), { code: 'ERR_CONNECT', closeCode: 1006 })
    assert.match(never.message, /ws:\/\/gw\.test\/wsds/)
  })
})

const pick = (e: WsdsError) => ({ code: e.code, closeCode: e.closeCode })
