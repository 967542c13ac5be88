/** Finding the processes of programs the bench starts without an IPC channel (/proc, Linux). */
import { readFileSync, readdirSync } from 'node:fs'

/** Pids whose command line (arguments joined by spaces) contains `needle`. */
export function pidsByCmdline(needle: string): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ')
      if (cmd.includes(needle) && Number(entry) !== process.pid) out.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return out
}

/** Direct children of `pid` (nginx's workers of its master). */
export function childPids(pid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) out.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return out
}
