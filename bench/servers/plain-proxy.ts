/**
 * Baseline for the protected-request figure: a plain node:http server that hands every
 * request to the same reverse proxy the gateway uses (`createReverseProxy`, prefix /api
 * stripped), with no authentication. env: BENCH_UPSTREAM.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createReverseProxy } from '../../src/proxy/reverse-proxy.ts'
import { serveCommands } from '../lib/ipc.ts'

const proxy = createReverseProxy({ upstream: process.env.BENCH_UPSTREAM!, stripPrefix: '/api' })
const server = createServer((req, res) => proxy(req, res))
server.keepAliveTimeout = 65_000
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const { port } = server.address() as AddressInfo
serveCommands({ port, url: `http://127.0.0.1:${port}` }, {})
