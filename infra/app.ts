/**
 * CDK app. `npm run synth` (infra/synth.ts) writes the committed template with code from
 * S3 parameters; `npm run deploy:aws` runs `cdk deploy` on this app with the bundles in
 * dist/aws as an asset (set WSDS_CDK_CODE=parameters to deploy the committed form instead).
 * WSDS_AUTH_CACHE_TTL_MS sets the authorizer TTL (rounded up to whole seconds); WSDS_POLICY_FILE
 * puts policy rules on the authorizer (infra/stack.ts `policyFile`).
 */
import { App } from 'aws-cdk-lib'
import { authorizerTtlFromEnv, policyFileFromEnv, WsdsStack } from './stack.ts'

const app = new App()
new WsdsStack(app, 'Wsds', {
  code: process.env.WSDS_CDK_CODE === 'parameters' ? 'parameters' : 'asset',
  assetDir: 'dist/aws',
  authorizerTtlSeconds: authorizerTtlFromEnv(process.env),
  // WSDS_POLICY_FILE: a path is bundled by npm run bundle:aws (same variable), ssm:/<name> read at run time.
  ...((f) => (f === undefined ? {} : { policyFile: f }))(policyFileFromEnv(process.env)),
})
app.synth()
