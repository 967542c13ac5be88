/** Kept for imports from before the move: the origin policy lives in core (src/core/origin.ts). */
export { createOriginPolicy, normalizeOrigin, type OriginPolicy } from '../core/origin.ts'
