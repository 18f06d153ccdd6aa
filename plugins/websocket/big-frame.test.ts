/**
 * The slow-reader limit counts what waits besides the frame just queued: one frame bigger than the limit (a
 * 10 MB chat answer in its `response`) sits in the buffer whole for a while even for a peer that reads at full
 * speed, and must not close it with 1013. Bytes waiting beyond it still do. A peer whose buffer the test sets,
 * through the real LiveSocket.
 */
import { describe, expect, test } from 'bun:test'
import type { Gantry } from '../../src/core/context.ts'
import type { SocketPeer } from '../../src/core/runtime.ts'
import { openLiveSocket } from './connection.ts'

const MB = 1024 * 1024
const gantry = {
  state: new Map(),
  connections: new Set(),
  config: { heartbeatIntervalMs: 60_000 },
  log: { info() {}, warn() {}, error() {}, debug() {} },
} as unknown as Gantry

/** A peer with `buffered` bytes already waiting; each send queues its frame behind them. */
function peer(buffered: number) {
  const p = {
    readyState: 1,
    buffered,
    closedWith: undefined as number | undefined,
    send(data: string | Uint8Array) {
      p.buffered += typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength
      return -1
    },
    getBufferedAmount: () => p.buffered,
    ping() {},
    close(code?: number) {
      p.closedWith = code
      p.readyState = 3
    },
    terminate() {
      p.readyState = 3
    },
  }
  return p
}

describe('a frame bigger than the slow-reader limit', () => {
  test('alone in the buffer, it keeps the socket open, on send and on the runtime’s later word', () => {
    const p = peer(0)
    const live = openLiveSocket(gantry, p as SocketPeer)
    expect(live.send('x'.repeat(10 * MB))).toBe(true)
    live.backlog()
    expect(p.closedWith).toBeUndefined()
    live.closed()
  })

  test('behind more than the limit of earlier frames, it closes the socket with 1013', () => {
    const p = peer(2 * MB)
    const live = openLiveSocket(gantry, p as SocketPeer)
    expect(live.send('x'.repeat(10 * MB))).toBe(false)
    expect(p.closedWith).toBe(1013)
  })

  test('small frames that pile up past the limit behind it close the socket', () => {
    const p = peer(0)
    const live = openLiveSocket(gantry, p as SocketPeer)
    expect(live.send('x'.repeat(10 * MB))).toBe(true)
    let sent = 0
    while (live.send('y'.repeat(64 * 1024)) && sent < 100) sent++
    expect(p.closedWith).toBe(1013)
    // Frames after the big one are let through until they themselves pass the limit: 1 MB of 64 KB frames.
    expect(sent).toBe(16)
  })

  test('once the buffer is back under the limit, the big frame no longer counts', () => {
    const p = peer(0)
    const live = openLiveSocket(gantry, p as SocketPeer)
    expect(live.send('x'.repeat(10 * MB))).toBe(true)
    p.buffered = 0 // the peer read it all
    expect(live.send('y'.repeat(64 * 1024))).toBe(true) // queued behind nothing: resets the allowance
    p.buffered = 2 * MB // then it stops reading
    expect(live.send('z'.repeat(64 * 1024))).toBe(false)
    expect(p.closedWith).toBe(1013)
  })
})
