/**
 * A WebSocket client on a raw TCP socket (node:net), for tests that send what no library
 * would: endless fragments, binary junk, oversized frames, half-sent upgrades.
 */
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'

export interface RawSocket {
  socket: Socket
  /** Bytes received after the 101 response. */
  received(): Buffer
  /** Resolves with the close code of the server's close frame (null: TCP closed without one). */
  closed: Promise<number | null>
}

/** Builds one masked client frame. */
export function frame(opcode: number, payload: Buffer | string, fin = true): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload
  const mask = randomBytes(4)
  const len = data.length
  const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10)
  head[0] = (fin ? 0x80 : 0) | opcode
  if (len < 126) head[1] = 0x80 | len
  else if (len < 65536) {
    head[1] = 0x80 | 126
    head.writeUInt16BE(len, 2)
  } else {
    head[1] = 0x80 | 127
    head.writeBigUInt64BE(BigInt(len), 2)
  }
  const masked = Buffer.alloc(len)
  for (let i = 0; i < len; i++) masked[i] = data[i]! ^ mask[i % 4]!
  return Buffer.concat([head, mask, masked])
}

/** The upgrade request a browser would send. */
export function upgradeRequest(path: string, origin: string, host = '127.0.0.1'): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nOrigin: ${origin}\r\n\r\n`
  )
}

/** Finds the first close frame in server bytes; returns its code (1005 when it has none). */
function closeCodeIn(buf: Buffer): number | undefined {
  let i = 0
  while (i + 2 <= buf.length) {
    const opcode = buf[i]! & 0x0f
    let len = buf[i + 1]! & 0x7f
    let off = i + 2
    if (len === 126) {
      if (off + 2 > buf.length) return undefined
      len = buf.readUInt16BE(off)
      off += 2
    } else if (len === 127) {
      if (off + 8 > buf.length) return undefined
      len = Number(buf.readBigUInt64BE(off))
      off += 8
    }
    if (off + len > buf.length) return undefined
    if (opcode === 0x8) return len >= 2 ? buf.readUInt16BE(off) : 1005
    i = off + len
  }
  return undefined
}

/** Opens a raw socket and completes the upgrade; rejects if the answer is not 101. */
export function rawUpgrade(port: number, path: string, origin: string): Promise<RawSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let head = Buffer.alloc(0)
    let body = Buffer.alloc(0)
    let upgraded = false
    let resolveClosed: (code: number | null) => void = () => {}
    const closed = new Promise<number | null>((r) => (resolveClosed = r))
    let settled = false
    socket.on('error', () => {})
    socket.on('data', (chunk) => {
      if (!upgraded) {
        head = Buffer.concat([head, chunk])
        const end = head.indexOf('\r\n\r\n')
        if (end === -1) return
        const status = head.subarray(0, head.indexOf('\r\n')).toString()
        if (!/^HTTP\/1\.1 101/.test(status)) {
          socket.destroy()
          return reject(new Error(`upgrade answered ${status}`))
        }
        upgraded = true
        body = head.subarray(end + 4)
        resolve({ socket, received: () => body, closed })
      } else body = Buffer.concat([body, chunk])
      if (!settled) {
        const code = closeCodeIn(body)
        if (code !== undefined) {
          settled = true
          resolveClosed(code)
        }
      }
    })
    socket.on('close', () => {
      if (!upgraded) reject(new Error('closed before the upgrade completed'))
      if (!settled) {
        settled = true
        resolveClosed(null)
      }
    })
    socket.write(upgradeRequest(path, origin))
  })
}
