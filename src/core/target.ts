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

const DOT_SEGMENTS = new Set(['.', '..', '%2e', '.%2e', '%2e.', '%2e%2e'])

const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66)

/** Whether target[start, end) is a dot segment, in any spelling (`.`, `..`, `%2E`, `.%2e`...). */
function isDotSegment(target: string, start: number, end: number): boolean {
  const n = end - start
  if (n === 0 || n === 5 || n > 6) return false
  return DOT_SEGMENTS.has(target.slice(start, end).toLowerCase())
}

/**
 * Checks a request-target as sent (`/api/greeting?who=Ada`). `path` is the part before `?`
 * and `query` the part after it (without `?`, '' when none), both untouched. One pass over
 * the characters: it runs on every request of every front.
 */
export function checkTarget(target: string): TargetCheck {
  const length = target.length
  if (length === 0 || target.charCodeAt(0) !== 0x2f /* / */ || (length > 1 && target.charCodeAt(1) === 0x2f)) return { ok: false, reason: 'not-origin-form' }
  if (length > MAX_TARGET_LENGTH) return { ok: false, reason: 'too-long' }
  let inPath = true
  let pathEnd = length
  let segmentStart = 1
  for (let i = 1; i < length; i++) {
    const c = target.charCodeAt(i)
    // Browsers percent-encode all of these; only a hand-made request sends them raw.
    if (c <= 0x20 || c >= 0x7f || c === 0x23 /* # */) return { ok: false, reason: 'bad-character' }
    if (c === 0x25 /* % */) {
      const h1 = i + 1 < length ? target.charCodeAt(i + 1) : -1
      const h2 = i + 2 < length ? target.charCodeAt(i + 2) : -1
      if (!isHex(h1) || !isHex(h2)) return { ok: false, reason: 'bad-percent-encoding' }
      const byte = parseInt(target.slice(i + 1, i + 3), 16)
      if (byte < 0x20 || byte === 0x7f) return { ok: false, reason: 'bad-percent-encoding' }
      if (inPath && (byte === 0x2f || byte === 0x5c)) return { ok: false, reason: 'encoded-separator' }
      i += 2
      continue
    }
    if (!inPath) continue
    if (c === 0x5c /* \ */) return { ok: false, reason: 'encoded-separator' }
    if (c === 0x2f /* / */ || c === 0x3f /* ? */) {
      if (isDotSegment(target, segmentStart, i)) return { ok: false, reason: 'dot-segment' }
      if (c === 0x2f && i === segmentStart) return { ok: false, reason: 'empty-segment' }
      segmentStart = i + 1
      if (c === 0x3f) {
        inPath = false
        pathEnd = i
      }
    }
  }
  if (inPath && isDotSegment(target, segmentStart, length)) return { ok: false, reason: 'dot-segment' }
  return pathEnd === length ? { ok: true, path: target, query: '' } : { ok: true, path: target.slice(0, pathEnd), query: target.slice(pathEnd + 1) }
}

/** The body every front answers a refused target with (status 400). */
export const BAD_PATH_BODY = '{"error":"bad-path"}'
