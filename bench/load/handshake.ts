/**
 * One client handshake, lean: open (with Origin), hello, read `connection` and `challenge`,
 * evaluate the challenge source as a page would (test/helpers/ws-client.ts `solve`), send
 * the answer, wait for `verified`, then close and wait for the close to finish. The client
 * does exactly this against the gateway and the baseline alike.
 */
import WebSocket from 'ws'

export interface HandshakeTarget {
  wsUrl: string
  origin: string
  hostname: string
  keys: readonly string[]
}

export interface HandshakeDone {
  /** ms from `new WebSocket` to the `verified` frame. */
  verifiedMs: number
  /** ms from `new WebSocket` to the close event (whole cycle); equal to verifiedMs when held. */
  cycleMs: number
  connectionId: string
  /** The open socket, when `hold` was asked. */
  ws: WebSocket | null
}

const HELLO = JSON.stringify({ action: 'hello', v: 1 })

// V8 caches what `new Function` compiles, keyed by the source text. The gateway's challenges
// are all different, the baseline's come from a pool of 200 and repeat, so without this the
// baseline client would skip parsing and compiling (about 200 us of a ~250 us evaluation on
// the bench machine) and the two runs would not cost the client the same. A unique trailing
// comment makes every evaluation compile afresh, as a page evaluating its one challenge does.
let evaluations = 0

// Each handshake is a new TCP connection that the client closes, so the client side keeps it
// in TIME_WAIT for 60 s. At well over 1,000 handshakes/s from one source address that fills
// the ephemeral port range (about 28,000 ports) and connect() slows down searching for a
// free port, more the longer the run. Spreading the sources over several loopback addresses
// (all of 127/8 is local on Linux) gives each its own port range.
const SOURCE_ADDRESSES = Array.from({ length: Number(process.env.BENCH_SOURCE_ADDRESSES ?? 32) }, (_, i) => `127.0.0.${i + 2}`)
let nextSource = 0

export function handshake(target: HandshakeTarget, hold = false, timeoutMs = 10_000): Promise<HandshakeDone> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const localAddress = SOURCE_ADDRESSES[nextSource++ % SOURCE_ADDRESSES.length]
    const ws = new WebSocket(target.wsUrl, { origin: target.origin, perMessageDeflate: false, localAddress })
    let connectionId = ''
    let verifiedMs = -1
    let settled = false
    const fail = (err: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      ws.terminate()
      reject(err)
    }
    const timer = setTimeout(() => fail(new Error('handshake timeout')), timeoutMs)
    ws.on('unexpected-response', (_req, res) => {
      res.resume()
      fail(new Error(`upgrade refused with ${res.statusCode}`))
    })
    ws.on('error', (err) => fail(err))
    ws.on('open', () => ws.send(HELLO))
    ws.on('message', (data, isBinary) => {
      if (settled) return
      const m = JSON.parse(isBinary ? '{}' : data.toString()) as { type: string; connectionId?: string; token?: string; code?: string; reason?: string }
      switch (m.type) {
        case 'connection':
          connectionId = m.connectionId!
          return
        case 'challenge': {
          const fn = new Function('location', `return (${m.code})\n//${++evaluations}`)({ hostname: target.hostname }) as (input: { keys: readonly string[] }) => unknown
          const token = m.token
          Promise.resolve(fn({ keys: target.keys })).then(
            (result) => ws.send(JSON.stringify({ action: 'answer', token, result })),
            (err: Error) => fail(err),
          )
          return
        }
        case 'verified':
          verifiedMs = performance.now() - t0
          if (hold) {
            settled = true
            clearTimeout(timer)
            resolve({ verifiedMs, cycleMs: verifiedMs, connectionId, ws })
          } else {
            ws.close(1000)
          }
          return
        default:
          fail(new Error(`unexpected frame ${JSON.stringify(m)}`))
      }
    })
    ws.on('close', (code) => {
      if (settled) return
      if (verifiedMs < 0) return fail(new Error(`closed ${code} before verified`))
      settled = true
      clearTimeout(timer)
      resolve({ verifiedMs, cycleMs: performance.now() - t0, connectionId, ws: null })
    })
  })
}
