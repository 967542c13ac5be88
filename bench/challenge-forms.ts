/**
 * Gateway CPU per challenge, per form, with and without engine checks: what a handshake
 * costs the gateway beyond the socket (draw + expected answer + encoding the frame).
 * `node --import tsx bench/challenge-forms.ts [count]`; figures go to docs/benchmarks.md
 * only from a quiet machine.
 */
import { createChallenge } from '../src/core/challenge.ts'
import { generateKeySet } from '../src/core/keyset.ts'
import { encodeServerMessage } from '../src/core/protocol.ts'
import { createRandomPool } from '../src/core/random.ts'
import { createEngineChecks } from '../src/engine/parse5.ts'

const count = Number(process.argv[2] ?? 5000)
const random = createRandomPool()
const keySet = generateKeySet(random)
const engine = createEngineChecks('monitor')

function run(form: 'code' | 'program', withEngine: boolean): number {
  const started = process.cpuUsage()
  let bytes = 0
  for (let i = 0; i < count; i++) {
    const c = createChallenge({ keySet, hostname: 'app.example.com', random, form, engine: withEngine ? engine : undefined })
    const frame = c.form === 'program'
      ? encodeServerMessage({ type: 'challenge', token: 'x', form: 'program', program: c.program, expiresInMs: 10000 })
      : encodeServerMessage({ type: 'challenge', token: 'x', code: c.code, expiresInMs: 10000 })
    bytes += frame.length
  }
  const cpu = process.cpuUsage(started)
  const us = (cpu.user + cpu.system) / count
  console.log(`${form.padEnd(7)} engine=${withEngine ? 'on ' : 'off'}  ${us.toFixed(1)} µs CPU per challenge, frame ${Math.round(bytes / count)} bytes`)
  return us
}

for (let round = 0; round < 2; round++) {
  for (const withEngine of [false, true]) for (const form of ['code', 'program'] as const) run(form, withEngine)
}
