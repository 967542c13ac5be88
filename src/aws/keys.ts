/**
 * Key sets for the Lambda handlers. `WSDS_KEYS_FILE` keeps its meaning (comma-separated,
 * current first) and each entry may also be `ssm:<parameter name>` (a SecureString holding
 * the key set JSON) or `secretsmanager:<secret id>`, so on AWS the secrets never sit in the
 * template or the function's environment. Loaded once per Lambda container.
 */
import { readFile } from 'node:fs/promises'
import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm'
import { GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager'
import { WsdsError } from '../core/errors.ts'
import { createKeyRing, type KeyRing } from '../core/keyring.ts'
import { parseKeySet, type KeySet } from '../core/keyset.ts'

export interface KeySources {
  /** Created on first use: a deployment on files or SSM never loads the other clients. */
  ssm?: () => SSMClient
  secretsManager?: () => SecretsManagerClient
}

export function parseKeySources(value: string | undefined): string[] {
  const entries = (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (entries.length === 0) throw new WsdsError('ERR_CONFIG', 'WSDS_KEYS_FILE must name at least one key set (path, ssm:<name> or secretsmanager:<id>)')
  return entries
}

async function readSource(entry: string, clients: KeySources): Promise<string> {
  if (entry.startsWith('ssm:')) {
    if (!clients.ssm) throw new WsdsError('ERR_CONFIG', `WSDS_KEYS_FILE: ${entry} needs an SSM client`)
    const out = await clients.ssm().send(new GetParameterCommand({ Name: entry.slice(4), WithDecryption: true }))
    const text = out.Parameter?.Value
    if (text === undefined) throw new WsdsError('ERR_CONFIG', `WSDS_KEYS_FILE: ${entry} has no value`)
    return text
  }
  if (entry.startsWith('secretsmanager:')) {
    if (!clients.secretsManager) throw new WsdsError('ERR_CONFIG', `WSDS_KEYS_FILE: ${entry} needs a Secrets Manager client`)
    const out = await clients.secretsManager().send(new GetSecretValueCommand({ SecretId: entry.slice(15) }))
    if (out.SecretString === undefined) throw new WsdsError('ERR_CONFIG', `WSDS_KEYS_FILE: ${entry} has no SecretString`)
    return out.SecretString
  }
  return readFile(entry, 'utf8')
}

export async function loadKeySets(entries: readonly string[], clients: KeySources): Promise<KeySet[]> {
  return Promise.all(
    entries.map(async (entry) => {
      let json: unknown
      try {
        json = JSON.parse(await readSource(entry, clients))
      } catch (cause) {
        if (cause instanceof WsdsError) throw cause
        throw new WsdsError('ERR_CONFIG', `WSDS_KEYS_FILE: cannot load ${entry}: ${(cause as Error).message}`, { cause })
      }
      return parseKeySet(json, entry)
    }),
  )
}

/** A key ring loaded on first use and kept for the container's life; a failed load is retried. */
export function lazyKeyRing(load: () => Promise<KeySet[]>): () => Promise<KeyRing> {
  let pending: Promise<KeyRing> | null = null
  return () => {
    pending ??= load().then(createKeyRing, (err: unknown) => {
      pending = null
      throw err
    })
    return pending
  }
}
