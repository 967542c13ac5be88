/**
 * Synthesizes the stack in-process (no CDK CLI) into the template CloudFormation can deploy
 * alone: no bootstrap stack, no asset, no CDK metadata. `npm run synth` writes it to
 * deploy/aws/template.json; tests compare it with a fresh synth to catch a stale commit.
 */
import { writeFileSync } from 'node:fs'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { App, BootstraplessSynthesizer } from 'aws-cdk-lib'
import { authorizerTtlFromEnv, policyFileFromEnv, WsdsStack } from './stack.ts'

export const TEMPLATE_PATH = fileURLToPath(new URL('../deploy/aws/template.json', import.meta.url))

/** `validate: false` skips CDK's built-in CloudFormation validation (seconds per synth) in unit tests. */
export function synthTemplate(options: { validate?: boolean; authorizerTtlSeconds?: number; policyFile?: string } = {}): Record<string, unknown> {
  const app = new App({
    outdir: mkdtempSync(join(tmpdir(), 'wsds-cdk-')),
    analyticsReporting: false,
    builtinCloudFormationValidation: options.validate ?? true,
    context: { 'aws:cdk:enable-path-metadata': false, 'aws:cdk:version-reporting': false },
  })
  const stack = new WsdsStack(app, 'Wsds', {
    code: 'parameters',
    synthesizer: new BootstraplessSynthesizer(),
    ...(options.authorizerTtlSeconds === undefined ? {} : { authorizerTtlSeconds: options.authorizerTtlSeconds }),
    ...(options.policyFile === undefined ? {} : { policyFile: options.policyFile }),
  })
  const assembly = app.synth()
  return assembly.getStackArtifact(stack.artifactId).template as Record<string, unknown>
}

/**
 * The committed text: CDK's stable key order, compact JSON and a final newline. Compact
 * because `aws cloudformation deploy --template-file` refuses a template over 51,200 bytes
 * without --s3-bucket, and the indented form is over it (read it with `jq . template.json`).
 */
export const MAX_INLINE_TEMPLATE_BYTES = 51_200

export function templateText(template: Record<string, unknown>): string {
  return JSON.stringify(template) + '\n'
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // `npm run synth -- --out FILE` writes a template of your own (e.g. with WSDS_POLICY_FILE or
  // WSDS_AUTH_CACHE_TTL_MS set); without --out the committed one, which uses the defaults.
  const at = process.argv.indexOf('--out')
  const out = at === -1 ? TEMPLATE_PATH : process.argv[at + 1]
  if (out === undefined || out === '') throw new Error('--out needs a file name')
  const env = at === -1 ? {} : process.env
  const policyFile = policyFileFromEnv(env)
  const started = performance.now()
  writeFileSync(out, templateText(synthTemplate({ authorizerTtlSeconds: authorizerTtlFromEnv(env), ...(policyFile === undefined ? {} : { policyFile }) })))
  console.log(`wrote ${out} in ${Math.round(performance.now() - started)} ms`)
}
