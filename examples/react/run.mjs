#!/usr/bin/env node
// `npm run example:react`: a key set for this example (made once), the gateway on :8080
// loading it, and Vite on :5173 serving the app with /wsds and /api proxied to the gateway.
// Ctrl-C stops both.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const here = (path) => fileURLToPath(new URL(path, import.meta.url))
const root = here('../../')
const keysFile = here('./keys/current.json')
const wsds = [here('../../bin/wsds.js')]

if (!existsSync(keysFile)) {
  mkdirSync(here('./keys'), { recursive: true })
  const made = spawnSync(process.execPath, [...wsds, 'keys', 'generate', '--id', 'react-example'], { cwd: root, encoding: 'utf8' })
  if (made.status !== 0) {
    process.stderr.write(made.stderr)
    process.exit(1)
  }
  writeFileSync(keysFile, made.stdout)
}

const children = []
const start = (args, env) => {
  const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } })
  child.on('exit', (code) => {
    for (const other of children) if (other !== child) other.kill('SIGTERM')
    process.exitCode = code ?? 1
  })
  children.push(child)
}
start([...wsds, 'serve'], {
  PORT: process.env.PORT ?? '8080',
  WSDS_KEYS_FILE: keysFile,
  WSDS_ALLOWED_ORIGINS: 'http://localhost:5173,http://127.0.0.1:5173',
})
start([here('../../node_modules/vite/bin/vite.js'), here('.')], { WSDS_EXAMPLE_KEYS: keysFile })
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => children.forEach((c) => c.kill('SIGTERM')))
