/**
 * Server under test: the real standalone gateway (`startServer`), configured from the
 * environment exactly as `wsds serve` is (PORT, WSDS_* names), logging silenced.
 */
import { pino } from 'pino'
import { loadConfig } from '../../src/server/config.ts'
import { startServer } from '../../src/server/server.ts'
import { serveCommands } from '../lib/ipc.ts'

const config = loadConfig(process.env)
const running = await startServer(config, { logger: pino({ level: 'silent' }) })
serveCommands(
  { port: running.port, url: running.url, wsUrl: running.url.replace('http', 'ws') + '/wsds' },
  {
    gateway: () => ({
      open: running.gateway.openConnections,
      verified: running.gateway.verifiedConnections,
      stats: running.gateway.stats,
      auth: running.authenticator.stats,
    }),
    // Records the memory store still holds (the soak run checks that none are left).
    records: () => (running.store as { size?: number }).size ?? null,
  },
)
