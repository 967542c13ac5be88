/**
 * Periodic re-challenges (PROTOCOL.md, "Re-challenge and proof of work": WSDS_RECHALLENGE_MS,
 * jitter at most 10%). One interval for every connection, never a timer per socket: due
 * times fall into slots of `tickMs`, and each tick hands the ids of every slot that came due
 * to `onDue`. Memory is one map entry per scheduled connection.
 */

export interface RechallengeTimerOptions {
  /** Interval between a verification and the next re-challenge, ms. */
  intervalMs: number
  /** Called with the ids whose re-challenge is due; they are unscheduled first. */
  onDue: (connectionIds: string[]) => void
  now?: () => number
  /** Uniform in [0, 1); jitter only, so it need not be a CSPRNG. */
  random?: () => number
}

export interface RechallengeTimer {
  /** (Re)schedules `connectionId` one interval, less up to 10% jitter, from now. */
  schedule(connectionId: string): void
  cancel(connectionId: string): void
  readonly size: number
  stop(): void
}

/** Jitter spreads re-challenges of sockets opened together (a deploy, a reconnect storm). */
export const RECHALLENGE_JITTER = 0.1

export function createRechallengeTimer(options: RechallengeTimerOptions): RechallengeTimer {
  const { intervalMs, onDue } = options
  if (!Number.isInteger(intervalMs) || intervalMs < 100) throw new RangeError(`intervalMs must be an integer >= 100, got ${intervalMs}`)
  const now = options.now ?? Date.now
  const random = options.random ?? Math.random
  // Slots of 1/50 of the interval (10 ms..1 s): small enough to fit inside the jitter window.
  const tickMs = Math.min(1000, Math.max(10, Math.floor(intervalMs / 50)))
  const slots = new Map<number, Set<string>>()
  const slotOf = new Map<string, number>()

  function cancel(id: string): void {
    const slot = slotOf.get(id)
    if (slot === undefined) return
    slotOf.delete(id)
    const set = slots.get(slot)
    set?.delete(id)
    if (set?.size === 0) slots.delete(slot)
  }

  const timer = setInterval(() => {
    const current = Math.floor(now() / tickMs)
    const due: string[] = []
    for (const [slot, ids] of slots) {
      if (slot > current) continue
      slots.delete(slot)
      for (const id of ids) {
        slotOf.delete(id)
        due.push(id)
      }
    }
    if (due.length > 0) onDue(due)
  }, tickMs)
  timer.unref()

  return {
    schedule(id) {
      cancel(id)
      // Due in [0.9, 1) x interval: the draw leaves room for the slot's rounding up (< 1 tick),
      // so the re-challenge is never early by more than 10% nor late, timer delays aside.
      const spread = Math.max(0, intervalMs * RECHALLENGE_JITTER - tickMs)
      const at = now() + intervalMs - tickMs - spread * random()
      const slot = Math.ceil(at / tickMs)
      let set = slots.get(slot)
      if (set === undefined) slots.set(slot, (set = new Set()))
      set.add(id)
      slotOf.set(id, slot)
    },
    cancel,
    get size() {
      return slotOf.size
    },
    stop() {
      clearInterval(timer)
      slots.clear()
      slotOf.clear()
    },
  }
}
