/**
 * Redis Cluster's key -> slot function (the cluster specification: CRC16-XMODEM of the key,
 * or of its first non-empty `{hash tag}`, modulo 16384), so lease renewal can group keys by
 * the primary that serves them. test/store-redis-cluster.test.ts checks it against the
 * server's own CLUSTER KEYSLOT.
 */
const TABLE = (() => {
  const table = new Uint16Array(256)
  for (let i = 0; i < 256; i++) {
    let crc = i << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
    table[i] = crc
  }
  return table
})()

const encoder = new TextEncoder()

function crc16(bytes: Uint8Array): number {
  let crc = 0
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ b) & 0xff]!
  return crc
}

export const SLOT_COUNT = 16384

export function keySlot(key: string): number {
  let bytes = encoder.encode(key)
  const open = bytes.indexOf(0x7b) // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1) // }
    if (close > open + 1) bytes = bytes.subarray(open + 1, close)
  }
  return crc16(bytes) % SLOT_COUNT
}
