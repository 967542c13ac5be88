/**
 * CDK app. `npm run synth` (infra/synth.ts) writes the committed template with code from
 * S3 parameters; `npm run deploy:aws` runs `cdk deploy` on this app with the bundles in
 * dist/aws as an asset (set WSDS_CDK_CODE=parameters to deploy the committed form instead).
 */
import { App } from 'aws-cdk-lib'
import { WsdsStack } from './stack.ts'

const app = new App()
new WsdsStack(app, 'Wsds', { code: process.env.WSDS_CDK_CODE === 'parameters' ? 'parameters' : 'asset', assetDir: 'dist/aws' })
app.synth()
