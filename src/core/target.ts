/**
 * One canonical request-target for every front (docs/protocol.md, "Canonical request
 * targets"). Routing, policy path globs and request signatures (PROTOCOL.md, "Request
 * binding": the target exactly as sent) must all see the same path, and proxies, frameworks
 * and upstreams disagree on how to resolve dot segments, encoded slashes and backslashes.
 * So a target is never rewritten: one that any of them could read two ways is refused
 * (400 `{"error":"bad-path"}`), and what passes means the same thing to all of them.
 */

export type TargetProblem =
  /** Empty, or not origin-form (absolute-form `http://h/p`, asterisk-form `*`, `//host`). */
  | 'not-origin-form'
  /** Longer than MAX_TARGET_LENGTH. */
  | 'too-long'
  /** A control character, space, DEL, non-ASCII byte or `#`. */
  | 'bad-character'
  /** `%` not followed by two hex digits, or an encoded control character (`%00`-`%1f`, `%7f`). */
  | 'bad-percent-encoding'
  /** `%2f` or `%5c` (any case) in the path, or a raw `\` in the path. */
  | 'encoded-separator'
  /** A `.` or `..` segment, also spelled with `%2e` in any case. */
  | 'dot-segment'
  /** `//` inside the path: proxies that merge slashes would see another path. */
  | 'empty-segment'

export type TargetCheck = { ok: true; path: string; query: string } | { ok: false; reason: TargetProblem }

/** Longest target accepted, characters (Node's default header limit is 16 KiB in all). */
export const MAX_TARGET_LENGTH = 8192

const HEX = /^[0-9A-Fa-f]{2}$/

/**
 * Checks a request-target as sent (`/api/greeting?who=Ada`). `path` is the part before `?`
 * and `query` the part after it (without `?`, '' when none), both untouched.
 */
export function checkTarget(target: string): TargetCheck {
  if (target.length === 0 || target.charCodeAt(0) !== 0x2f /* / */ || target.startsWith('//')) return { ok: false, reason: 'not-origin-form' }
  if (target.length > MAX_TARGET_LENGTH) return { ok: false, reason: 'too-long' }
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  const query = q === -1 ? '' : target.slice(q + 1)
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i)
    // Browsers percent-encode all of these; only a hand-made request sends them raw.
    if (c <= 0x20 || c >= 0x7f || c === 0x23 /* # */) return { ok: false, reason: 'bad-character' }
    if (c === 0x5c /* \ */ && (q === -1 || i < q)) return { ok: false, reason: 'encoded-separator' }
    if (c === 0x25 /* % */) {
      const hex = target.slice(i + 1, i + 3)
      if (!HEX.test(hex)) return { ok: false, reason: 'bad-percent-encoding' }
      const byte = parseInt(hex, 16)
      if (byte < 0x20 || byte === 0x7f) return { ok: false, reason: 'bad-percent-encoding' }
      if ((byte === 0x2f || byte === 0x5c) && (q === -1 || i < q)) return { ok: false, reason: 'encoded-separator' }
    }
  }
  const segments = path.split('/')
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!
    // The last segment may be empty: `/api/` is a path of its own, not an oddity.
    if (segment === '' && i < segments.length - 1) return { ok: false, reason: 'empty-segment' }
    if (segment.length <= 6) {
      const decoded = segment.replace(/%2e/gi, '.')
      if (decoded === '.' || decoded === '..') return { ok: false, reason: 'dot-segment' }
    }
  }
  return { ok: true, path, query }
}

/** The body every front answers a refused target with (status 400). */
export const BAD_PATH_BODY = '{"error":"bad-path"}'
