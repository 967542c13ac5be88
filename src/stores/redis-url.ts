/**
 * Parser for the Redis forms of WSDS_STORE (grammar in docs/protocol.md). No ioredis import
 * here, so configuration can validate a URL at start without loading the client.
 */
import { WsdsError } from '../core/errors.ts'

export interface HostPort {
  host: string
  port: number
}

export type RedisTopology =
  | { kind: 'single'; url: string }
  | { kind: 'sentinel'; sentinels: HostPort[]; name: string; db: number; username?: string; password?: string }
  | { kind: 'cluster'; nodes: HostPort[]; username?: string; password?: string }



/** Upper bound on hosts in one URL: a typo should not become a thousand connections. */
const MAX_HOSTS = 32

export function isRedisStoreUrl(url: string): boolean {
  return /^(rediss?|redis-sentinel|redis-cluster):\/\//.test(url)
}

const bad = (url: string, why: string): never => {
  throw new WsdsError('ERR_CONFIG', `WSDS_STORE="${redact(url)}": ${why}`)
}

/** The URL with any password replaced, for error messages and logs. */
export function redact(url: string): string {
  return url.replace(/^([a-z-]+:\/\/[^:@/]*:)[^@/]*@/, '$1***@')
}

function parseHosts(url: string, text: string): HostPort[] {
  const parts = text.split(',')
  if (parts.length > MAX_HOSTS) bad(url, `at most ${MAX_HOSTS} hosts`)
  return parts.map((part) => {
    // host:port, or [v6]:port
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(part.trim())
    if (m === null) return bad(url, `"${part}" must be host:port`)
    const port = Number(m[2])
    if (port < 1 || port > 65535) bad(url, `port ${m[2]} is out of range`)
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
  })
}

function parseUserinfo(url: string, text: string | undefined): { username?: string; password?: string } {
  if (text === undefined) return {}
  const colon = text.indexOf(':')
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s)
    } catch {
      return bad(url, 'credentials are not valid percent-encoding')
    }
  }
  const username = decode(colon < 0 ? text : text.slice(0, colon))
  const password = colon < 0 ? undefined : decode(text.slice(colon + 1))
  return { ...(username !== '' ? { username } : {}), ...(password !== undefined ? { password } : {}) }
}

/** Parses a Redis WSDS_STORE URL; throws `ERR_CONFIG` with the reason on anything else. */
export function parseRedisStoreUrl(url: string): RedisTopology {
  if (url.startsWith('redis://') || url.startsWith('rediss://')) return { kind: 'single', url }
  const m = /^(redis-sentinel|redis-cluster):\/\/(?:([^@/?#]*)@)?([^/?#]+)(\/[^?#]*)?(\?[^#]*)?$/.exec(url)
  if (m === null) return bad(url, 'must be redis://, rediss://, redis-sentinel://h1:p1,h2:p2/<master-name> or redis-cluster://h1:p1,h2:p2')
  const [, scheme, userinfo, hostsText, path, query] = m
  const hosts = parseHosts(url, hostsText!)
  const auth = parseUserinfo(url, userinfo)
  if (scheme === 'redis-cluster') {
    if ((path ?? '/') !== '/' || query !== undefined) bad(url, 'a Redis Cluster URL takes no path or query (Cluster has only database 0)')
    return { kind: 'cluster', nodes: hosts, ...auth }
  }
  const name = decodeURIComponent((path ?? '').slice(1))
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(name)) bad(url, 'needs the master name as its path: redis-sentinel://h1:p1,h2:p2/mymaster')
  let db = 0
  if (query !== undefined) {
    const params = new URLSearchParams(query)
    for (const key of params.keys()) if (key !== 'db') bad(url, `unknown parameter "${key}" (only db)`)
    const dbText = params.get('db') ?? '0'
    db = /^\d{1,2}$/.test(dbText) ? Number(dbText) : bad(url, `db must be a database number, got "${dbText}"`)
  }
  return { kind: 'sentinel', sentinels: hosts, name, db, ...auth }
}

/** `host:port` list for log lines (never the credentials). */
export function describeRedisUrl(url: string): string {
  const t = parseRedisStoreUrl(url)
  if (t.kind === 'single') return new URL(url).host
  if (t.kind === 'sentinel') return `sentinel ${t.name} via ${t.sentinels.map((h) => `${h.host}:${h.port}`).join(',')}`
  return `cluster via ${t.nodes.map((h) => `${h.host}:${h.port}`).join(',')}`
}
