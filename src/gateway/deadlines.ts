/**
 * Challenge deadlines for every socket of a gateway on one coarse timer, instead of a
 * setTimeout per socket (PROTOCOL.md, Sequence 3 and 7: `timeout` is "no answer within
 * expiresInMs"). Deadlines fall into slots of `tickMs`; a slot is handed to `onDue` once
 * `now()` has passed its end, so nothing fires before its deadline by the clock the
 * lifecycle reads, and nothing fires more than a tick (plus event-loop delay) after it. The
 * lifecycle also checks the deadline on every frame, so a late tick never gives a solver
 * more time. The timer runs only while something is armed.
 *
 * Memory is one set entry per armed item; an item is armed at most once (arming again moves
 * it), so the queue never holds more entries than there are sockets.
 */

/** An item the queue can arm: it keeps its own slot, so cancelling costs no lookup. */
export interface Deadlined {
  /** The slot the item is armed in, or -1; managed by the queue. */
  deadlineSlot: number
}

export interface DeadlineQueueOptions<T extends Deadlined> {
  /** Slot width, ms: the most a deadline is acted on late, event-loop delay aside. */
  tickMs: number
  now: () => number
  /** Called for each item whose deadline has passed; it is disarmed first. */
  onDue(item: T): void
}

export interface DeadlineQueue<T extends Deadlined> {
  /** Arms (or moves) `item`'s deadline to epoch ms `at`. */
  arm(item: T, at: number): void
  /** Disarms `item`; nothing when it is not armed. */
  cancel(item: T): void
  /** Items armed. */
  readonly size: number
  /** Disarms everything and stops the timer. */
  stop(): void
}

/** Slot width for a challenge timeout: a fiftieth of it, between 5 and 50 ms. */
export function deadlineTickMs(timeoutMs: number): number {
  return Math.min(50, Math.max(5, Math.floor(timeoutMs / 50)))
}

export function createDeadlineQueue<T extends Deadlined>(options: DeadlineQueueOptions<T>): DeadlineQueue<T> {
  const { tickMs, now, onDue } = options
  if (!Number.isInteger(tickMs) || tickMs < 1) throw new RangeError(`tickMs must be an integer >= 1, got ${tickMs}`)
  const slots = new Map<number, Set<T>>()
  let size = 0
  let timer: ReturnType<typeof setInterval> | null = null

  function cancel(item: T): void {
    if (item.deadlineSlot === -1) return
    const set = slots.get(item.deadlineSlot)
    if (set !== undefined && set.delete(item)) {
      size--
      if (set.size === 0) slots.delete(item.deadlineSlot)
    }
    item.deadlineSlot = -1
    // The timer stops at its next tick when nothing is armed: stopping it here would cost a
    // clearInterval and a setInterval per handshake when handshakes come one at a time.
  }

  function tick(): void {
    // A slot is due once the clock is past its end: slot * tickMs >= every deadline in it.
    const current = Math.floor(now() / tickMs)
    let due: T[] | null = null
    for (const [slot, set] of slots) {
      if (slot > current) continue
      slots.delete(slot)
      for (const item of set) {
        item.deadlineSlot = -1
        size--
        ;(due ??= []).push(item)
      }
    }
    if (size === 0 && timer !== null) {
      clearInterval(timer)
      timer = null
    }
    // After the bookkeeping: a handler may arm or cancel again.
    if (due !== null) for (const item of due) onDue(item)
  }

  return {
    arm(item, at) {
      cancel(item)
      const slot = Math.ceil(at / tickMs)
      let set = slots.get(slot)
      if (set === undefined) slots.set(slot, (set = new Set()))
      set.add(item)
      item.deadlineSlot = slot
      size++
      if (timer === null) {
        timer = setInterval(tick, tickMs)
        // The sockets keep the process alive, not their deadlines.
        timer.unref()
      }
    },
    cancel,
    get size() {
      return size
    },
    stop() {
      for (const set of slots.values()) for (const item of set) item.deadlineSlot = -1
      slots.clear()
      size = 0
      if (timer !== null) clearInterval(timer)
      timer = null
    },
  }
}
