/**
 * Reads the committed CloudFormation template (deploy/aws/template.json) the way the local
 * run needs it: the state machine's definition with its intrinsics resolved, and which
 * bundle (`<name>.handler`) each Lambda resource runs, so tasks bind to the same code.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const TEMPLATE_PATH = fileURLToPath(new URL('../../deploy/aws/template.json', import.meta.url))

export const LOCAL_REGION = 'local'
export const LOCAL_ACCOUNT = '000000000000'

export interface CfnTemplate {
  Parameters?: Record<string, { Default?: unknown }>
  Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }>
}

export function readTemplate(path = TEMPLATE_PATH): CfnTemplate {
  return JSON.parse(readFileSync(path, 'utf8')) as CfnTemplate
}

/** The ARN a Lambda resource gets locally: its logical id is the function name. */
export const localFunctionArn = (logicalId: string) => `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${logicalId}`
export const localStateMachineArn = (logicalId: string) => `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:${logicalId}`

/** Resolves the intrinsics CDK emits in this template: Fn::Join, Ref, Fn::GetAtt (Arn), Fn::Sub without a map. */
export function resolveIntrinsics(value: unknown, template: CfnTemplate, params: Record<string, string> = {}): unknown {
  const ref = (name: string): string => {
    if (name === 'AWS::Partition') return 'aws'
    if (name === 'AWS::Region') return LOCAL_REGION
    if (name === 'AWS::AccountId') return LOCAL_ACCOUNT
    if (name === 'AWS::URLSuffix') return 'amazonaws.com'
    if (name in params) return params[name]!
    const resource = template.Resources[name]
    if (resource?.Type === 'AWS::StepFunctions::StateMachine') return localStateMachineArn(name)
    if (resource !== undefined) return name
    const def = template.Parameters?.[name]?.Default
    if (def !== undefined) return String(def)
    throw new Error(`cannot resolve Ref ${name}`)
  }
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk)
    if (v === null || typeof v !== 'object') return v
    const obj = v as Record<string, unknown>
    const keys = Object.keys(obj)
    if (keys.length === 1) {
      const [k] = keys as [string]
      const arg = obj[k]
      if (k === 'Ref') return ref(arg as string)
      if (k === 'Fn::Join') {
        const [sep, parts] = arg as [string, unknown[]]
        return (parts.map(walk) as string[]).join(sep)
      }
      if (k === 'Fn::GetAtt') {
        const [id, attr] = arg as [string, string]
        const resource = template.Resources[id]
        if (resource?.Type === 'AWS::Lambda::Function' && attr === 'Arn') return localFunctionArn(id)
        throw new Error(`cannot resolve Fn::GetAtt ${id}.${attr}`)
      }
      if (k === 'Fn::Sub' && typeof arg === 'string') return arg.replace(/\$\{([^}]+)\}/g, (_, name: string) => ref(name))
    }
    return Object.fromEntries(keys.map((key) => [key, walk(obj[key])]))
  }
  return walk(value)
}

export interface StateMachineFromTemplate {
  logicalId: string
  arn: string
  definition: Record<string, unknown>
  /** Local function ARN -> bundle name (`timer` for handler `timer.handler`). */
  functions: Map<string, string>
}

/** `params`: template parameters to substitute (ChallengeTimeoutSeconds for the local deadline). */
export function stateMachineFromTemplate(template: CfnTemplate, params: Record<string, string> = {}): StateMachineFromTemplate {
  const entry = Object.entries(template.Resources).find(([, r]) => r.Type === 'AWS::StepFunctions::StateMachine')
  if (!entry) throw new Error('the template has no state machine')
  const [logicalId, resource] = entry
  const text = resolveIntrinsics(resource.Properties?.DefinitionString, template, params)
  if (typeof text !== 'string') throw new Error('DefinitionString did not resolve to a string')
  const functions = new Map<string, string>()
  for (const [id, r] of Object.entries(template.Resources)) {
    if (r.Type !== 'AWS::Lambda::Function') continue
    const handler = String(r.Properties?.Handler ?? '')
    functions.set(localFunctionArn(id), handler.replace(/\.handler$/, ''))
  }
  return { logicalId, arn: localStateMachineArn(logicalId), definition: JSON.parse(text) as Record<string, unknown>, functions }
}
