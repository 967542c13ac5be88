/** The protected service for the proxy figures: the demo greeting server on its own port. */
import { startGreetingServer } from '../../src/demo/greeting.ts'
import { serveCommands } from '../lib/ipc.ts'

const upstream = await startGreetingServer(0, '127.0.0.1')
serveCommands({ url: upstream.url }, {})
