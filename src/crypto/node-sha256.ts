/**
 * SHA-256 with node:crypto for every Node adapter that core asks for a hash (proof of work,
 * policy service tokens): the one-shot `hash` where Node has it (20.12+), which skips the
 * Hash object, else createHash.
 */
import * as cryptoModule from 'node:crypto'
import { createHash } from 'node:crypto'

const oneShotHash = (cryptoModule as { hash?: (alg: string, data: Uint8Array, encoding: 'buffer') => Buffer }).hash

export const nodeSha256: (data: Uint8Array) => Uint8Array =
  typeof oneShotHash === 'function' ? (data) => oneShotHash('sha256', data, 'buffer') : (data) => createHash('sha256').update(data).digest()
