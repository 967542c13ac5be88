/** What bench/run.ts hands every section. */
export interface SectionContext {
  /** Key set file shared by the gateways and the load generator. */
  keysFile: string
  /** A private directory for the run (removed at the end). */
  tmp: string
  /** Environment of a gateway process (`wsds serve` names), optionally with WSDS_UPSTREAM. */
  gatewayEnv(upstream: string | null): Record<string, string>
  /** Environment the load generator and the bare server need. */
  benchEnv: Record<string, string>
  /** --cpu-prof arguments when BENCH_PROFILE names the process. */
  profileArgv(name: string): string[]
  /** Open files the load generator may need (idle sockets). */
  needFds: number
}
