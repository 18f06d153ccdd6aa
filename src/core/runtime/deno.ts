/**
 * Deno's side of the runtime seam. Elysia picks its Web-standard adapter on Deno, which has no `listen` and no
 * WebSocket: `Deno.serve` serves `app.fetch` here, and WebSocket routes upgrade through `ServerHandle.upgrade`,
 * which marks the request; once Elysia has answered (its hooks ran on an ordinary answer), the serve handler
 * replaces that answer with `Deno.upgradeWebSocket`'s 101, whose headers Elysia could not touch.
 */
import { extname } from 'node:path'
import type {
  ListenOptions,
  Servable,
  ServerHandle,
  SocketHandler,
  SocketPeer,
  UpgradeOptions,
} from './types.ts'

/** The few parts of the `Deno` namespace used here (its types are not installed: the type-check is Bun's). */
interface DenoApi {
  version: { deno: string }
  serve(options: {
    port: number
    hostname: string
    onListen?: (addr: { hostname: string; port: number }) => void
    handler: (request: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>
  }): { addr: { hostname: string; port: number }; shutdown(): Promise<void> }
  upgradeWebSocket(
    request: Request,
    options?: { protocol?: string; idleTimeout?: number },
  ): { socket: WebSocket; response: Response }
  openSync(path: string): { readable: ReadableStream<Uint8Array> }
  listen(options: { hostname: string; port: number }): { addr: { port: number }; close(): void }
}

const deno = () => (globalThis as unknown as { Deno: DenoApi }).Deno

export const denoRuntimeName = () => `deno ${deno().version.deno}`

interface PendingUpgrade {
  handler: SocketHandler
  options?: UpgradeOptions
}

export function listenDeno(app: Servable, opts: ListenOptions): ServerHandle {
  const fetch = app.fetch.bind(app)
  const peers = new WeakMap<Request, string>()
  const upgrades = new WeakMap<Request, PendingUpgrade>()
  const server = deno().serve({
    port: opts.port,
    hostname: opts.hostname,
    // Deno prints "Listening on …" by default; the banner and the log say it already.
    onListen: () => {},
    handler: async (request, info) => {
      peers.set(request, info.remoteAddr.hostname)
      const response = await fetch(request)
      const pending = upgrades.get(request)
      if (pending) return acceptUpgrade(request, pending)
      // `@elysiajs/static` (the console, noVNC) reads files without Bun.file here and sends no content type;
      // browsers refuse a module script or, with nosniff, a style sheet without one. Named by the file's name.
      // Not `response.body`: reading it turns a string body into a stream and takes Deno off its fast path.
      if (response.status === 200 && !response.headers.has('content-type')) {
        const type = CONTENT_TYPES[extname(new URL(request.url).pathname).toLowerCase()]
        if (type) response.headers.set('content-type', type)
      }
      return response
    },
  })
  let stopping: Promise<void> | undefined
  return {
    port: server.addr.port,
    hostname: server.addr.hostname,
    requestIP: (request) => {
      const address = peers.get(request)
      return address === undefined ? null : { address }
    },
    // Deno.serve has no idle timeout on a response being streamed: an SSE stream stays open while quiet, so
    // there is nothing to lift.
    timeout: () => {},
    upgrade: (request, handler, options) => {
      if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') return undefined
      upgrades.set(request, { handler, options })
      return ''
    },
    // shutdown() lets requests in flight finish (the graceful half); the forced half is the caller's deadline:
    // it stops waiting and closes the database, and the process exits.
    stop: (force) => {
      stopping ??= server.shutdown()
      return force ? Promise.race([stopping, new Promise<void>((r) => setTimeout(r, 100))]) : stopping
    },
  }
}

function acceptUpgrade(request: Request, { handler, options }: PendingUpgrade): Response {
  const { socket, response } = deno().upgradeWebSocket(request, {
    protocol: options?.protocol,
    idleTimeout: options?.idleTimeoutSeconds ?? 120,
  })
  const peer = new DenoPeer(socket, handler)
  socket.binaryType = 'arraybuffer'
  socket.onopen = () => handler.open(peer)
  socket.onmessage = (event) => {
    const data = event.data
    handler.message(peer, typeof data === 'string' ? data : new Uint8Array(data as ArrayBuffer))
  }
  // Deno may report one closing twice (its idle timeout's 1001, then the transport's 1005): once is enough.
  socket.onclose = (event) => peer.closedBy(event.code, event.reason)
  socket.onerror = () => {}
  return response
}

/**
 * Peers that sent in the current turn of the event loop. Deno writes to the network only after the turn, so
 * right after a burst of sends (a replay page, a fan-out) `bufferedAmount` holds all of them, though nothing is
 * late yet; what is still buffered in a later turn is what the peer has not taken. One shared timer per turn.
 */
const sentThisTurn = new Set<DenoPeer>()
let turnScheduled = false
const endTurn = () => {
  turnScheduled = false
  for (const peer of sentThisTurn) peer.endTurn()
  sentThisTurn.clear()
}

/** Bun's `ServerWebSocket` conventions over a standard WebSocket (see SocketPeer). */
class DenoPeer implements SocketPeer {
  readonly ownsHeartbeat = true
  bytesThisTurn = 0
  private largestThisTurn = 0
  /**
   * The largest frame sent in an earlier turn since the buffer was last empty. Deno counts a frame as queued until
   * the last of it is written, so a big one (a 10 MB answer) stays in `bufferedAmount` for a while even when the
   * peer reads at full speed: only what waits besides it says the peer is not reading, as on Bun (LiveSocket).
   */
  private largestEarlier = 0
  private draining: ReturnType<typeof setTimeout> | undefined = undefined
  private isClosed = false

  constructor(
    private readonly socket: WebSocket,
    readonly data: SocketHandler,
  ) {}

  get readyState(): number {
    return this.socket.readyState
  }

  send(data: string | Uint8Array): number {
    if (this.socket.readyState !== 1) return 0
    this.socket.send(data)
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength
    this.bytesThisTurn += bytes
    if (bytes > this.largestThisTurn) this.largestThisTurn = bytes
    sentThisTurn.add(this)
    if (!turnScheduled) {
      turnScheduled = true
      setTimeout(endTurn, 0)
    }
    if (this.getBufferedAmount() === 0) return bytes
    if (!this.draining) this.waitForDrain()
    return -1
  }

  /** The turn's sends are measured now: what is still queued is what the peer has not taken (see `backlog`). */
  endTurn(): void {
    this.bytesThisTurn = 0
    if (this.socket.bufferedAmount === 0) this.largestEarlier = 0
    else {
      if (this.largestThisTurn > this.largestEarlier) this.largestEarlier = this.largestThisTurn
      if (!this.draining && !this.isClosed) this.waitForDrain()
    }
    this.largestThisTurn = 0
  }

  /** What the peer has not taken: queued less this turn's sends (not tried yet) and the big frame in flight. */
  getBufferedAmount(): number {
    return Math.max(0, this.socket.bufferedAmount - this.bytesThisTurn - this.largestEarlier)
  }

  /** Deno pings idle sockets itself (`idleTimeout`) and closes those that do not answer. */
  ping(): void {}

  close(code?: number, reason?: string): void {
    try {
      this.socket.close(code, reason)
    } catch {
      // already closing, or a reason past 123 bytes: the socket goes either way
      this.socket.close()
    }
  }

  /** The standard WebSocket has no way to drop a connection without the close handshake. */
  terminate(): void {
    this.close(1001, 'not responding')
  }

  closedBy(code: number, reason: string): void {
    if (this.isClosed) return
    this.isClosed = true
    clearTimeout(this.draining)
    this.data.close(this, code, reason)
  }

  /**
   * No drain event on a standard WebSocket: look again every few ms while something is queued, telling the
   * handler (`backlog`: it closes a peer past its limit), and `drain` once all of it is gone.
   */
  private waitForDrain(): void {
    if (!this.data.drain && !this.data.backlog) return
    this.draining = setTimeout(() => {
      this.draining = undefined
      if (this.isClosed || this.socket.readyState !== 1) return
      if (this.socket.bufferedAmount === 0) {
        this.largestEarlier = 0
        return this.data.drain?.(this)
      }
      this.data.backlog?.(this)
      this.waitForDrain()
    }, 5)
  }
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html;charset=utf-8',
  '.js': 'text/javascript;charset=utf-8',
  '.mjs': 'text/javascript;charset=utf-8',
  '.css': 'text/css;charset=utf-8',
  '.json': 'application/json;charset=utf-8',
  '.map': 'application/json;charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain;charset=utf-8',
  '.wasm': 'application/wasm',
}

/** A file as a streaming Response, or 404 when it is missing (what Bun does with a missing Bun.file). */
export function denoFileResponse(path: string, cacheControl?: string): Response {
  let file: { readable: ReadableStream<Uint8Array> }
  try {
    file = deno().openSync(path)
  } catch {
    return new Response(null, { status: 404 })
  }
  const type = CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream'
  return new Response(file.readable, {
    headers: cacheControl
      ? { 'cache-control': cacheControl, 'content-type': type }
      : { 'content-type': type },
  })
}

export function denoFreeLoopbackPort(): number {
  const listener = deno().listen({ hostname: '127.0.0.1', port: 0 })
  const port = listener.addr.port
  listener.close()
  return port
}
