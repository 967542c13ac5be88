import { WsdsError } from './errors.ts'
import type { KeySet } from './keyset.ts'

/**
 * The key sets a gateway accepts at once (PROTOCOL.md, Key set file). The first is the
 * current one, used when `hello` names none; the others let pages of an older build finish.
 */
export interface KeyRing {
  readonly current: KeySet
  readonly sets: readonly KeySet[]
  /** The set for a `hello.keySet` value, or null when it is not accepted (stale-keyset). */
  resolve(keySetId: string | undefined): KeySet | null
}

export function createKeyRing(sets: readonly KeySet[]): KeyRing {
  const current = sets[0]
  if (current === undefined) throw new WsdsError('ERR_KEYSET', 'at least one key set is needed')
  const byId = new Map<string, KeySet>()
  for (const set of sets) {
    if (byId.has(set.id)) throw new WsdsError('ERR_KEYSET', `key set id "${set.id}" is loaded twice`)
    byId.set(set.id, set)
  }
  return {
    current,
    sets: [...sets],
    resolve: (id) => (id === undefined ? current : (byId.get(id) ?? null)),
  }
}
