/**
 * A minimal RFB (VNC) client over WebSocket, for the tests and the benchmark: it speaks the handshake a
 * viewer speaks (version, VNC authentication, ClientInit) and reports what the server said.
 */
import { createCipheriv } from 'node:crypto'

/** VNC authentication: the 16-byte challenge DES-encrypted with the password, each key byte bit-reversed. */
export function vncAuthResponse(password: string, challenge: Uint8Array): Uint8Array {
  const key = Buffer.alloc(8)
  key.write(password.slice(0, 8), 'latin1')
  for (let i = 0; i < 8; i++) {
    let b = key[i]!
    let r = 0
    for (let bit = 0; bit < 8; bit++) {
      r = (r << 1) | (b & 1)
      b >>= 1
    }
    key[i] = r
  }
  const cipher = createCipheriv('des-ecb', key, null)
  cipher.setAutoPadding(false)
  return new Uint8Array(Buffer.concat([cipher.update(challenge), cipher.final()]))
}

/** Bytes from a WebSocket as a stream one can `read(n)` from, whatever the framing. */
class ByteReader {
  private buffer = new Uint8Array(0)
  private waiter?: () => void
  closed?: { code: number; reason: string }

  push(chunk: Uint8Array): void {
    const next = new Uint8Array(this.buffer.byteLength + chunk.byteLength)
    next.set(this.buffer)
    next.set(chunk, this.buffer.byteLength)
    this.buffer = next
    this.waiter?.()
  }

  close(code: number, reason: string): void {
    this.closed = { code, reason }
    this.waiter?.()
  }

  async read(n: number, timeoutMs = 5000): Promise<Uint8Array> {
    const until = Date.now() + timeoutMs
    while (this.buffer.byteLength < n) {
      if (this.closed)
        throw new Error(
          `socket closed (${this.closed.code} ${this.closed.reason}) after ${this.buffer.byteLength} bytes`,
        )
      if (Date.now() > until) throw new Error(`timed out waiting for ${n} bytes`)
      await new Promise<void>((resolve) => {
        this.waiter = resolve
        setTimeout(resolve, 50)
      })
    }
    const out = this.buffer.subarray(0, n)
    this.buffer = this.buffer.subarray(n)
    return out
  }
}

export interface RfbSession {
  banner: string
  securityTypes: number[]
  /** 0 = authenticated; otherwise the failure and the server's reason. */
  securityResult: number
  failureReason?: string
  /** From ServerInit, when authenticated. */
  width?: number
  height?: number
  name?: string
  socket: WebSocket
}

/**
 * Opens a WebSocket (with optional headers: Authorization, Cookie, Origin) and resolves once it is open. `tls`
 * goes to Bun's client as is (a `ca` for a test certificate, say).
 */
export function openSocket(
  url: string,
  headers: Record<string, string>,
  tls?: { ca?: string },
): Promise<{ socket: WebSocket; reader: ByteReader }> {
  const reader = new ByteReader()
  // Bun's WebSocket takes headers; browsers would send the cookie and Origin themselves.
  const socket = new WebSocket(url, { headers, ...(tls ? { tls } : {}) } as unknown as string[])
  socket.binaryType = 'arraybuffer'
  socket.addEventListener('message', (e) => {
    if (e.data instanceof ArrayBuffer) reader.push(new Uint8Array(e.data))
  })
  socket.addEventListener('close', (e) => reader.close(e.code, e.reason))
  return new Promise((resolve, reject) => {
    socket.addEventListener('open', () => resolve({ socket, reader }), { once: true })
    socket.addEventListener('error', () => reject(new Error(`WebSocket to ${url} failed`)), { once: true })
  })
}

/** The close a socket ends with, e.g. when the bridge refuses it after the upgrade. */
export async function closeOf(url: string, headers: Record<string, string>) {
  const { reader } = await openSocket(url, headers)
  await reader.read(1, 5000).catch(() => {})
  return reader.closed
}

/** Connects through the bridge and performs the RFB 3.8 handshake with VNC authentication (type 2). */
export async function rfbHandshake(
  url: string,
  headers: Record<string, string>,
  password: string,
  tls?: { ca?: string },
): Promise<RfbSession> {
  const { socket, reader } = await openSocket(url, headers, tls)
  const banner = new TextDecoder().decode(await reader.read(12))
  socket.send(new TextEncoder().encode('RFB 003.008\n'))
  const count = (await reader.read(1))[0]!
  const securityTypes = [...(await reader.read(count))]
  const session: RfbSession = { banner, securityTypes, securityResult: -1, socket }
  if (!securityTypes.includes(2)) return session
  socket.send(new Uint8Array([2]))
  const challenge = await reader.read(16)
  socket.send(vncAuthResponse(password, challenge))
  const result = new DataView((await reader.read(4)).slice().buffer).getUint32(0)
  session.securityResult = result
  if (result !== 0) {
    const length = new DataView((await reader.read(4)).slice().buffer).getUint32(0)
    session.failureReason = new TextDecoder().decode(await reader.read(length))
    return session
  }
  socket.send(new Uint8Array([1])) // ClientInit: share the desktop with other viewers
  const init = new DataView((await reader.read(24)).slice().buffer)
  session.width = init.getUint16(0)
  session.height = init.getUint16(2)
  session.name = new TextDecoder().decode(await reader.read(init.getUint32(20)))
  return session
}

/** An RFB PointerEvent (message type 5): moves the desktop's pointer, as a viewer's mouse does. */
export function sendPointer(socket: WebSocket, x: number, y: number, buttons = 0): void {
  const message = new DataView(new ArrayBuffer(6))
  message.setUint8(0, 5)
  message.setUint8(1, buttons)
  message.setUint16(2, x)
  message.setUint16(4, y)
  socket.send(message.buffer)
}
