/**
 * The SDK's proof-of-work solver (docs/protocol.md, "Proof of work"): counts nonces 0, 1,
 * 2, ... until SHA-256(token + ":" + nonce) starts with `bits` zero bits. It runs on the
 * page's main thread in slices of `sliceMs` and yields to the event loop between them, so
 * input, rendering and requestAnimationFrame keep running; no Worker (a blob: worker is
 * what a strict CSP forbids, and a worker script would be a second file to serve).
 */
import { digestWords } from '../core/sha256.ts'

export interface PowSolution {
  nonce: string
  /** Wall time of the search, ms, reported to the gateway for its metrics. */
  ms: number
}

export interface SolveOptions {
  /** Longest run without yielding, ms (default 8: half a 60 Hz frame). */
  sliceMs?: number
  /** Polled between slices; true abandons the search (the socket went away). */
  cancelled?: () => boolean
}

// Browsers and Node (the SDK's two homes) both have `performance`.
const now = (): number => performance.now()

/**
 * Yields to the event loop without setTimeout's 4 ms clamp where the platform allows. Not
 * `scheduler.yield()`: Chromium runs its continuations ahead of rendering, and a page solving
 * an 18-bit puzzle drew 8 frames a second with it against 55 with a message (docs/benchmarks.md).
 */
const yieldToLoop = (): Promise<unknown> =>
  new Promise((resolve) => {
    if (typeof MessageChannel !== 'function') return setTimeout(resolve)
    const { port1, port2 } = new MessageChannel()
    port1.onmessage = () => resolve(port1.close())
    port2.postMessage(0)
  })


/** Finds a nonce for `token` at `bits`; null when cancelled. */
export async function solvePow(token: string, bits: number, options: SolveOptions = {}): Promise<PowSolution | null> {
  if (!(Number.isInteger(bits) && bits >= 0 && bits <= 32)) throw new RangeError(`pow bits must be 0..32, got ${bits}`)
  const sliceMs = options.sliceMs ?? 8
  const started = now()
  const prefix = token + ':'
  for (let n = 0; ; ) {
    const sliceEnd = now() + sliceMs
    do {
      // Checking the clock costs more than a hash: look at it every 256 nonces.
      for (let k = 0; k < 256; k++, n++) {
        // 7-bit bytes, as the gateway's powInput (src/core/pow.ts) reads the token.
        // The first `bits` (0..32) bits of the digest are zero; `>>> 32` would shift by 0.
        if (!bits || !(digestWords(prefix + n, 127)[0]! >>> (32 - bits))) return { nonce: String(n), ms: Math.round(now() - started) }
      }
    } while (now() < sliceEnd)
    await yieldToLoop()
    if (options.cancelled?.()) return null
  }
}
