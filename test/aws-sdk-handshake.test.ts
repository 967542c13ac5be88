/**
 * The SDK's handshake bound: a gateway that accepts the socket but never sends a `challenge`
 * (on AWS: a route whose handler failed, which API Gateway answers with an "Internal server
 * error" frame) is given up on after `handshakeTimeoutMs`, and the SDK reconnects with
 * backoff; when it runs out of attempts the session fails with ERR_HANDSHAKE_TIMEOUT.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { WebSocket, WebSocketServer } from 'ws'
import { connect, type WebSocketConstructor } from '../src/client/index.ts'
import { testKeySet } from './helpers/server.ts'

describe('SDK handshake timeout', () => {
  let wss: WebSocketServer
  let url: string
  let upgrades = 0
  before(async () => {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    await new Promise((r) => wss.once('listening', r))
    url = `ws://127.0.0.1:${(wss.address() as { port: number }).port}/wsds`
    wss.on('connection', (socket) => {
      upgrades++
      // What API Gateway sends when a route's integration throws; never a challenge.
      socket.on('message', () => socket.send(JSON.stringify({ message: 'Internal server error', connectionId: 'R0oXAdfD0kwCH6w=', requestId: 'x' })))
    })
  })
  after(async () => {
    for (const c of wss.clients) c.terminate()
    await new Promise((r) => wss.close(r))
  })

  it('gives up a connection that gets no challenge in time, reconnects with backoff, then fails with ERR_HANDSHAKE_TIMEOUT', async () => {
    upgrades = 0
    const started = performance.now()
    const closes: boolean[] = []
    const session = connect({
      url,
      keys: testKeySet.keys,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      handshakeTimeoutMs: 200,
      pingIntervalMs: 0,
      reconnect: { minDelayMs: 20, maxDelayMs: 50, maxAttempts: 2 },
    })
    session.on('closed', (info) => closes.push(info.willReconnect))
    await assert.rejects(session.ready, { code: 'ERR_HANDSHAKE_TIMEOUT' })
    assert.equal(upgrades, 3, 'the first connection and two reconnects')
    assert.deepEqual(closes, [true, true, false])
    // Three bounded waits, with generous slack for a busy machine.
    assert.ok(performance.now() - started >= 600)
    session.close()
  })

  it('rejects a handshakeTimeoutMs that is not a non-negative number', () => {
    for (const handshakeTimeoutMs of [-1, Number.NaN, 2 ** 31]) {
      assert.throws(() => connect({ url, keys: testKeySet.keys, WebSocket: WebSocket as unknown as WebSocketConstructor, handshakeTimeoutMs }), { code: 'ERR_CONFIG' })
    }
  })
})
