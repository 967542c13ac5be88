/** `wsds/server`: run the standalone gateway from code (what `wsds serve` does). */
export { startServer } from './server.ts'
export type { RunningServer, StartOptions } from './server.ts'
export { loadConfig, SETTINGS } from './config.ts'
export type { ServerConfig } from './config.ts'
export { openPolicyFile, readPolicyFile } from './policy-file.ts'
export type { PolicyFile, PolicyFileOptions } from './policy-file.ts'
