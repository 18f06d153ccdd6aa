/**
 * A WebSocket client over a bare TCP socket, for what a stock client cannot do: stop reading, so that the
 * kernel's buffers fill and the server sees a slow reader (the VNC bridge's backpressure, a chat socket's 1013).
 * Text and binary frames are payload alike; the server's pings are answered.
 */
import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'

export interface RawWebSocket {
  /** Sends one masked binary frame. */
  send(data: Uint8Array): void
  /** The next `n` bytes of payload, across frames. */
  read(n: number, timeoutMs?: number): Promise<Uint8Array>
  /** True once `n` bytes of payload are here to read; false when they did not come within `timeoutMs`. */
  available(n: number, timeoutMs: number): Promise<boolean>
  /** Payload bytes received and not read yet. */
  buffered(): number
  /** Stops reading from the socket (the server's writes back up), and starts again. */
  pause(): void
  resume(): void
  /** The close frame's code, once one came. */
  closeCode(): number | undefined
  /** True once the TCP connection is gone (with or without a close frame). */
  ended(): boolean
  end(): void
}

/** `answerPings: false` makes a peer that never pongs (the server's heartbeat must close it). */
export async function openRawWebSocket(
  url: string,
  headers: Record<string, string>,
  options: { answerPings?: boolean } = {},
): Promise<RawWebSocket> {
  const target = new URL(url)
  const socket = connect({ host: target.hostname, port: Number(target.port) })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const lines = [
    `GET ${target.pathname}${target.search} HTTP/1.1`,
    `Host: ${target.host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Version: 13',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ]
  socket.write(`${lines.join('\r\n')}\r\n\r\n`)

  let raw: Buffer = Buffer.alloc(0)
  let upgraded = false
  const payload: Buffer[] = []
  let payloadBytes = 0
  let closeCode: number | undefined
  let ended = false
  let refusal: string | undefined
  let wake: (() => void) | undefined
  const frame = (opcode: number, data: Uint8Array) => {
    const mask = randomBytes(4)
    const length = data.byteLength
    const head =
      length < 126
        ? Buffer.from([0x80 | opcode, 0x80 | length])
        : length < 65536
          ? Buffer.from([0x80 | opcode, 0x80 | 126, length >> 8, length & 255])
          : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), bigLength(length)])
    const body = Buffer.from(data)
    for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!
    socket.write(Buffer.concat([head, mask, body]))
  }

  const parse = () => {
    if (!upgraded) {
      const end = raw.indexOf('\r\n\r\n')
      if (end < 0) return
      const status = raw.subarray(0, raw.indexOf('\r\n')).toString()
      if (!status.includes(' 101 ')) {
        refusal = status
        socket.destroy()
        return
      }
      upgraded = true
      raw = raw.subarray(end + 4)
    }
    for (;;) {
      if (raw.length < 2) return
      const opcode = raw[0]! & 15
      let length = raw[1]! & 127
      let offset = 2
      if (length === 126) {
        if (raw.length < 4) return
        length = raw.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (raw.length < 10) return
        length = Number(raw.readBigUInt64BE(2))
        offset = 10
      }
      if (raw.length < offset + length) return
      const data = raw.subarray(offset, offset + length)
      raw = raw.subarray(offset + length)
      if (opcode <= 2) {
        payload.push(Buffer.from(data))
        payloadBytes += length
      } else if (opcode === 8) closeCode = length >= 2 ? data.readUInt16BE(0) : 1005
      else if (opcode === 9 && options.answerPings !== false) frame(10, data)
    }
  }

  socket.on('data', (chunk: Buffer) => {
    raw = raw.length ? Buffer.concat([raw, chunk]) : chunk
    parse()
    wake?.()
  })
  socket.on('close', () => {
    ended = true
    wake?.()
  })
  socket.on('error', () => {})

  const take = (n: number): Uint8Array => {
    const out = new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      const head = payload[0]!
      const part = Math.min(head.length, n - filled)
      out.set(head.subarray(0, part), filled)
      filled += part
      if (part === head.length) payload.shift()
      else payload[0] = head.subarray(part)
    }
    payloadBytes -= n
    return out
  }

  const client: RawWebSocket = {
    send: (data) => frame(2, data),
    async available(n, timeoutMs) {
      const until = Date.now() + timeoutMs
      while (payloadBytes < n) {
        if (closeCode !== undefined || ended || Date.now() > until) return false
        await new Promise<void>((resolve) => {
          wake = resolve
          setTimeout(resolve, 50)
        })
      }
      return true
    },
    async read(n, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs
      while (payloadBytes < n) {
        if (closeCode !== undefined || ended)
          throw new Error(`closed (${closeCode ?? 'no close frame'}) with ${payloadBytes} of ${n} bytes`)
        if (Date.now() > until) throw new Error(`timed out waiting for ${n} bytes (${payloadBytes} here)`)
        await new Promise<void>((resolve) => {
          wake = resolve
          setTimeout(resolve, 50)
        })
      }
      return take(n)
    },
    buffered: () => payloadBytes,
    pause: () => socket.pause(),
    resume: () => socket.resume(),
    closeCode: () => closeCode,
    ended: () => ended,
    end: () => socket.destroy(),
  }
  // The 101 answer (or a refusal) comes first.
  const until = Date.now() + 5000
  while (!upgraded) {
    if (ended) throw new Error(`no upgrade: ${refusal ?? 'the server closed the connection'}`)
    if (Date.now() > until) throw new Error('no answer to the upgrade')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return client
}

function bigLength(length: number): Buffer {
  const out = Buffer.alloc(8)
  out.writeBigUInt64BE(BigInt(length))
  return out
}
