/**
 * `npm run aws:local`: reads the same configuration as `npm start` (src/server/config.ts)
 * and serves the AWS variant on HOST:PORT: /wsds, / (demo), /api/greeting (through the
 * authorizer), /wsds/auth, /healthz, /metrics.
 */
import { loadConfig } from '../../src/server/config.ts'
import { startAwsLocal } from './stack.ts'

// The records live in DynamoDB (dynalite) here, so the DynamoDB defaults apply, among them
// the 5 s authenticator cache TTL, the AWS stack's default authorizer TTL.
const config = loadConfig({ WSDS_STORE: 'dynamodb://wsds-connections?region=local', ...process.env }, process.argv.slice(2))
const quiet = config.logLevel === 'silent' || config.logLevel === 'error' || config.logLevel === 'warn'
const local = await startAwsLocal(config, { log: quiet ? undefined : (e) => console.log(JSON.stringify(e)) })
console.log(
  JSON.stringify({
    event: 'listening',
    url: local.url,
    deployment: 'aws-local',
    keySet: local.currentKeySet.id,
    ephemeralKeySet: config.keySets.length === 0,
    authorizerTtlSeconds: local.authorizerTtlSeconds,
    challengeTimeoutMs: config.challengeTimeoutMs,
  }),
)
const stop = () => {
  local.close().then(() => process.exit(0), () => process.exit(1))
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
