/**
 * A second listener for the gateway on a Unix domain socket (WSDS_SOCKET), for a reverse
 * proxy on the same host. Forward auth is one extra request per API call; over a Unix socket
 * it skips the TCP stack on both sides, which is most of what the hop costs (see
 * docs/benchmarks.md, "Proxies"). Connections go to the same listener function as the TCP
 * port's, so requests, upgrades, keep-alive and shutdown behave exactly as they do there.
 */
import { chmodSync, lstatSync, unlinkSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { WsdsError } from '../core/errors.ts'

/** Whether something accepts connections on the socket at `path`. */
function inUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect(path)
    probe.once('connect', () => {
      probe.destroy()
      resolve(true)
    })
    // ECONNREFUSED: a socket file nobody listens on (left by a process that was killed).
    probe.once('error', () => resolve(false))
  })
}

/**
 * Listens on `path` with permissions `mode` and gives every connection to `accept`. A socket
 * file left by a dead process is replaced; anything else at the path (a regular file, a live
 * listener) is an ERR_CONFIG, and nothing is removed.
 */
export async function listenUnixSocket(accept: (socket: Socket) => void, path: string, mode: number): Promise<Server> {
  let existing
  try {
    existing = lstatSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new WsdsError('ERR_CONFIG', `WSDS_SOCKET=${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err })
    }
  }
  if (existing !== undefined) {
    if (!existing.isSocket()) throw new WsdsError('ERR_CONFIG', `WSDS_SOCKET=${JSON.stringify(path)}: exists and is not a socket; not removing it`)
    if (await inUse(path)) throw new WsdsError('ERR_CONFIG', `WSDS_SOCKET=${JSON.stringify(path)}: another process is listening on it`)
    unlinkSync(path)
  }
  // allowHalfOpen as node:http's own listener has it (a half-closed client still gets its answer).
  const server = createServer({ allowHalfOpen: true }, accept)
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new WsdsError('ERR_CONFIG', `WSDS_SOCKET=${JSON.stringify(path)}: ${err.message}`, { cause: err })))
    server.listen(path, () => resolve())
  })
  // Until this runs the file has the umask's permissions, which give no one else write
  // access (needed to connect) under the usual 022 or 077.
  chmodSync(path, mode)
  return server
}
