/**
 * Test clients for Gantry's sockets: a stock WebSocket that records its frames, and a raw TCP peer that can
 * see refusals before the upgrade, stay silent (no pongs) or stop reading (a slow consumer).
 */
import { connect, type Socket } from 'node:net'
import { nextMatching } from '../../test/helpers.ts'

export interface WsClient {
  ws: WebSocket
  frames: any[]
  /** Resolves with the close code and reason. */
  closed: Promise<{ code: number; reason: string }>
  send(frame: unknown): void
  /** The first recorded frame (from `from` on) matching `match`, waiting for it if needed. */
  next(match?: (frame: any) => boolean, timeoutMs?: number, from?: number): Promise<any>
}

/**
 * Opens a WebSocket (Bun's client sends `headers` with the upgrade) and waits until it is open. `tls` is passed to
 * Bun's client as is (a `ca` for a test certificate, say).
 */
export function connectWs(
  url: string,
  headers: Record<string, string> = {},
  tls?: { ca?: string },
): Promise<WsClient> {
  const ws = new WebSocket(url, { headers, ...(tls ? { tls } : {}) } as any)
  const frames: any[] = []
  const waiters = new Set<() => void>()
  ws.onmessage = (m) => {
    frames.push(typeof m.data === 'string' ? JSON.parse(m.data) : m.data)
    for (const w of waiters) w()
  }
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.onclose = (e) => {
      resolve({ code: e.code, reason: e.reason })
      for (const w of waiters) w()
    }
  })
  const client: WsClient = {
    ws,
    frames,
    closed,
    send: (frame) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)),
    next: (match = () => true, timeoutMs = 5000, from = 0) =>
      nextMatching(frames, waiters, match, timeoutMs, 'frame', from),
  }
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(client)
    ws.onerror = () => reject(new Error(`WebSocket ${url} failed to open`))
  })
}

export interface RawPeer {
  status: number
  headers: string
  /** The HTTP body of a refusal (parsed JSON when it is). */
  body: any
  socket: Socket
  /** Bytes received after the upgrade response. */
  rest: Buffer
  /** Resolves when the TCP connection ends. */
  ended: Promise<void>
}

/** Sends a WebSocket upgrade by hand over TCP and returns the HTTP answer and the socket. */
export function rawUpgrade(url: string, headers: Record<string, string> = {}): Promise<RawPeer> {
  const u = new URL(url.replace(/^ws/, 'http'))
  const socket = connect(Number(u.port), u.hostname)
  const lines = [
    `GET ${u.pathname}${u.search} HTTP/1.1`,
    `Host: ${u.host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ]
  const ended = new Promise<void>((resolve) => {
    socket.once('close', () => resolve())
  })
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk])
      const end = buffer.indexOf('\r\n\r\n')
      if (end < 0) return
      const head = buffer.subarray(0, end).toString()
      const status = Number(head.split(' ')[1])
      const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0)
      if (status !== 101 && buffer.length < end + 4 + length) return
      socket.off('data', onData)
      const bodyText = status === 101 ? '' : buffer.subarray(end + 4, end + 4 + length).toString()
      let body: any = bodyText
      try {
        body = JSON.parse(bodyText)
      } catch {
        // not JSON
      }
      resolve({ status, headers: head, body, socket, rest: buffer.subarray(end + 4), ended })
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  })
}

/** Server frames of a raw peer, parsed (server frames are never masked). */
export function parseFrames(bytes: Buffer): { opcode: number; payload: Buffer }[] {
  const frames: { opcode: number; payload: Buffer }[] = []
  let at = 0
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at]! & 0x0f
    let length = bytes[at + 1]! & 0x7f
    let offset = at + 2
    if (length === 126) {
      if (offset + 2 > bytes.length) break
      length = bytes.readUInt16BE(offset)
      offset += 2
    } else if (length === 127) {
      if (offset + 8 > bytes.length) break
      length = Number(bytes.readBigUInt64BE(offset))
      offset += 8
    }
    if (offset + length > bytes.length) break
    frames.push({ opcode, payload: bytes.subarray(offset, offset + length) })
    at = offset + length
  }
  return frames
}
