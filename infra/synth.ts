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
import { WsdsStack } from './stack.ts'

export const TEMPLATE_PATH = fileURLToPath(new URL('../deploy/aws/template.json', import.meta.url))

/** `validate: false` skips CDK's built-in CloudFormation validation (seconds per synth) in unit tests. */
export function synthTemplate(options: { validate?: boolean } = {}): Record<string, unknown> {
  const app = new App({
    outdir: mkdtempSync(join(tmpdir(), 'wsds-cdk-')),
    analyticsReporting: false,
    builtinCloudFormationValidation: options.validate ?? true,
    context: { 'aws:cdk:enable-path-metadata': false, 'aws:cdk:version-reporting': false },
  })
  const stack = new WsdsStack(app, 'Wsds', { code: 'parameters', synthesizer: new BootstraplessSynthesizer() })
  const assembly = app.synth()
  return assembly.getStackArtifact(stack.artifactId).template as Record<string, unknown>
}

/** The committed text: stable key order is CDK's own; two-space JSON and a final newline. */
export function templateText(template: Record<string, unknown>): string {
  return JSON.stringify(template, null, 2) + '\n'
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const started = performance.now()
  writeFileSync(TEMPLATE_PATH, templateText(synthTemplate()))
  console.log(`wrote ${TEMPLATE_PATH} in ${Math.round(performance.now() - started)} ms`)
}
