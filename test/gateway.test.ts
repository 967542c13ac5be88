import { protocolSuite } from './contracts/protocol-suite.ts'
import { startTarget } from './helpers/server.ts'

protocolSuite('self-hosted gateway, memory store', startTarget)
