/**
 * The Origin allowlist (PROTOCOL.md, Sequence 1): pure, so the ws gateway, the Lambda
 * handlers and the CORS fronts (src/proxy/cors.ts) share one definition of an allowed origin.
 */
import { WsdsError } from './errors.ts'

/**
 * Normalizes one allowlist entry to the form browsers send in `Origin`
 * (scheme://host[:port], default ports omitted, lowercase). Throws ERR_CONFIG for entries
 * that are not origins, so a typo fails at start instead of refusing every page.
 */
export function normalizeOrigin(entry: string): string {
  let url: URL
  try {
    url = new URL(entry)
  } catch (cause) {
    throw new WsdsError('ERR_CONFIG', `allowed origin "${entry}" is not a URL`, { cause })
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new WsdsError('ERR_CONFIG', `allowed origin "${entry}" must be http: or https:`)
  }
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new WsdsError('ERR_CONFIG', `allowed origin "${entry}" must be scheme://host[:port] only`)
  }
  return url.origin
}

export interface OriginPolicy {
  /** The hostname to prove, or null when the origin is not allowed. */
  check(origin: string | undefined): string | null
  readonly origins: readonly string[]
}

export function createOriginPolicy(entries: readonly string[]): OriginPolicy {
  const allowed = new Map<string, string>()
  for (const entry of entries) {
    const origin = normalizeOrigin(entry)
    allowed.set(origin, new URL(origin).hostname)
  }
  return {
    origins: [...allowed.keys()],
    // Exact match on the header as sent: browsers send the serialized origin, so anything
    // that differs in case or form is not a browser of ours.
    check: (origin) => (origin === undefined ? null : (allowed.get(origin) ?? null)),
  }
}
