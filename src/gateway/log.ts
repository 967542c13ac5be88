/**
 * What the gateway writes to logs about clients: values cut to a bounded length, connection
 * ids only as short hashes, and a budget so that a flood of refusals cannot fill the disk.
 */
import { createHash } from 'node:crypto'

/** Longest client-supplied value written to a log line, characters. */
export const MAX_LOG_VALUE = 200

/** A client-supplied value as a log field: cut to MAX_LOG_VALUE characters. */
export function logValue(value: string): string {
  return value.length > MAX_LOG_VALUE ? `${value.slice(0, MAX_LOG_VALUE)}...(${value.length} chars)` : value
}

/** A log-safe stand-in for a connection id: enough to correlate lines, useless to replay. */
export function shortHash(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 10)
}

/**
 * A token bucket for log lines. `take()` gives null when the line is to be dropped, else
 * how many were dropped since the last line written (so the gap shows in the log).
 */
export function createLogBudget(burst: number, perSecond: number, now: () => number): { take(): number | null } {
  let tokens = burst
  let at = now()
  let dropped = 0
  return {
    take() {
      const t = now()
      tokens = Math.min(burst, tokens + ((t - at) * perSecond) / 1000)
      at = t
      if (tokens < 1) {
        dropped++
        return null
      }
      tokens--
      const gap = dropped
      dropped = 0
      return gap
    },
  }
}

export interface GatewayLogger {
  debug?(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}
