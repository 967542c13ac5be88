/**
 * Baseline for the handshake and memory figures: a bare `ws` server (perMessageDeflate off,
 * noServer on a node:http server, as the gateway mounts it) that exchanges the same number
 * and sizes of frames as a verified handshake, with no checks, no store and no state
 * machine: on the first client frame (hello) it sends a `connection` frame and a real
 * `challenge` frame from a pool generated before the run; on the second (answer) it sends
 * a `verified` frame. The client then closes (or, in the memory phase, keeps the socket).
 *
 * env: BENCH_KEYS_FILE (key set JSON), BENCH_HOSTNAME (hostname the challenges are for),
 *      BENCH_POOL (challenges in the pool, default 200), BENCH_TIMEOUT_MS (expiresInMs).
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { createChallenge } from '../../src/core/challenge.ts'
import { newId } from '../../src/core/lifecycle.ts'
import { createRandomPool } from '../../src/core/random.ts'
import { createEngineChecks } from '../../src/engine/parse5.ts'
import { loadKeySetFile } from '../../src/server/config.ts'
import { serveCommands } from '../lib/ipc.ts'

const keySet = loadKeySetFile(process.env.BENCH_KEYS_FILE!)
const hostname = process.env.BENCH_HOSTNAME!
const poolSize = Number(process.env.BENCH_POOL ?? 200)
const expiresInMs = Number(process.env.BENCH_TIMEOUT_MS ?? 10_000) - 2
const random = createRandomPool()
// The gateway's default (WSDS_ENGINE_CHECKS=monitor): its challenge frames carry an engine
// check, so the baseline's do too, and both sides write and the client runs the same sizes.
const engine = createEngineChecks((process.env.WSDS_ENGINE_CHECKS ?? 'monitor') as 'off' | 'monitor' | 'enforce')

// Frames are prebuilt strings, serialized the way the gateway serializes them (JSON with the
// same field order), so the baseline pays for framing and I/O only.
const connectionFrames: string[] = []
const challengeFrames: string[] = []
const verifiedFrames: string[] = []
for (let i = 0; i < poolSize; i++) {
  const connectionId = newId(random)
  const challenge = createChallenge({ keySet, hostname, random, engine })
  connectionFrames.push(JSON.stringify({ type: 'connection', connectionId }))
  challengeFrames.push(JSON.stringify({ type: 'challenge', token: newId(random), code: challenge.code, expiresInMs }))
  verifiedFrames.push(JSON.stringify({ type: 'verified', connectionId }))
}

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: 16 * 1024 })
let next = 0
let open = 0
const server = createServer((_req, res) => {
  res.writeHead(426)
  res.end()
})
server.keepAliveTimeout = 65_000
server.on('upgrade', (req, socket, head) => {
  socket.on('error', () => {})
  wss.handleUpgrade(req, socket, head, (ws) => {
    open++
    const i = next++ % poolSize
    let frames = 0
    ws.on('message', () => {
      frames++
      if (frames === 1) {
        ws.send(connectionFrames[i]!)
        ws.send(challengeFrames[i]!)
      } else if (frames === 2) {
        ws.send(verifiedFrames[i]!)
      }
    })
    ws.on('error', () => {})
    ws.on('close', () => open--)
  })
})
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const { port } = server.address() as AddressInfo
serveCommands({ port, url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/wsds` }, { gateway: () => ({ open }) })
