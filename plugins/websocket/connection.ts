/**
 * Reusable WebSocket connection handling for Gantry's sockets (`WS /ws/:id` here, `WS /ws/chat/:session_id`
 * in the sessions plugin, which declares `meta.dependsOn: ['websocket']`), on Bun and on Deno alike: the
 * runtime seam (src/core/runtime.ts) does the upgrade and gives each connection a `SocketPeer`.
 *
 * 1. The route is a plain `.get()` (Elysia's `.ws()` exists only on Bun). In its handler, before any upgrade, so
 *    refusals are ordinary JSON HTTP answers: `const user = await guardUpgrade(gantry, request)` checks the
 *    Origin (403 `forbidden_origin`) and the caller (`Authorization: Bearer`, the session cookie, or a
 *    single-use `?ticket=` from `POST /api/ws-ticket`; 401 otherwise). Then `return upgradeSocket(gantry,
 *    request, handler, set.headers)`: a plain GET gets 400 `not_a_websocket`.
 * 2. `handler` is a `SocketHandler`: an object with `open(peer)`, `message(peer, m)`, `close(peer)` and
 *    `pong(peer)`, best methods on a class prototype holding what the connection needs (see stream-socket.ts).
 * 3. In `open(peer)`: `const live = openLiveSocket(gantry, peer, { onClose })`. It joins the heartbeat (ping every
 *    HEARTBEAT_INTERVAL_MS, a peer silent for two intervals is terminated; on Deno the runtime does the same with
 *    its idle timeout), registers a closer in `gantry.connections` (shutdown closes with 1001), and keeps itself
 *    reachable by `liveSocketOf(gantry, peer)`. Or the handler IS the live socket: extend `LiveSocketBase`, call
 *    `this.attach(peer)` in `open`, override `release()` and `logContext` (StreamSocket does: one object per
 *    idle connection); it closes with `shut(code, reason)`, its `close(peer)` being the handler's.
 * 4. In `message(peer, message)`: `const frame = live.receive(message)`. It counts the peer as alive, closes
 *    1009 past `maxFrameBytes` (64 KB), 1008 past the flood limit, answers an `error` frame for binary or
 *    non-JSON (the connection stays) and returns the parsed object, or undefined when handled.
 * 5. Send with `live.send(objectOrString)`: past `maxBufferedBytes` not yet written to a slow peer (besides the
 *    largest frame waiting, which a fast peer may still be reading), the socket is closed with 1013 (try again
 *    later) instead of growing memory; the client resumes with `?since=`.
 * 6. In `pong(peer)`: `live.seen()`; in `close(peer)`: `live.closed()`.
 */
import { authenticate } from '../../src/core/auth.ts'
import type { Gantry } from '../../src/core/context.ts'
import { HttpError, Unauthorized } from '../../src/core/errors.ts'
import { originAllowed } from '../../src/core/http.ts'
import { findTextFault, parseJsonText } from '../../src/core/input.ts'
import type { Principal } from '../../src/core/keys.ts'
import type { ServerHandle, SocketHandler, SocketPeer } from '../../src/core/runtime.ts'
import { redeemTicket } from './tickets.ts'

/** WebSocket close codes Gantry uses. */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policyViolation: 1008,
  tooBig: 1009,
  tryAgainLater: 1013,
} as const

export interface LiveSocketOptions {
  /** Largest client frame accepted; bigger closes with 1009. */
  maxFrameBytes?: number
  /** Bytes queued for a slow peer before it is closed with 1013. */
  maxBufferedBytes?: number
  /** Client frames allowed per second on average, and in a burst, before closing with 1008. */
  floodPerSecond?: number
  floodBurst?: number
  /** Runs once when the socket is gone, whoever closed it. */
  onClose?: () => void
  /** Fields for this socket's log lines, e.g. `{ stream }`. */
  logContext?: Record<string, unknown>
}

export const LIVE_SOCKET_DEFAULTS = {
  maxFrameBytes: 64 * 1024,
  maxBufferedBytes: 1024 * 1024,
  floodPerSecond: 20,
  floodBurst: 60,
} as const

type RawSocket = SocketPeer

/** The sockets of one app and their one heartbeat timer (not one per socket), kept in `gantry.state`. */
interface SocketRegistry {
  /** `GET /metrics` reads `sockets.size`. */
  sockets: SocketList
  heartbeat: ReturnType<typeof setInterval> | undefined
}

/** A list through the sockets' own `before`/`after` fields: no hash entry per socket (about 130 bytes each). */
export class SocketList {
  size = 0
  private first: LiveSocketBase | undefined = undefined

  add(socket: LiveSocketBase): void {
    socket.after = this.first
    if (this.first) this.first.before = socket
    this.first = socket
    this.size++
  }

  delete(socket: LiveSocketBase): void {
    if (!socket.before && this.first !== socket) return
    if (socket.before) socket.before.after = socket.after
    else this.first = socket.after
    if (socket.after) socket.after.before = socket.before
    socket.before = socket.after = undefined
    this.size--
  }

  /** Safe while the socket just yielded leaves the list. */
  *[Symbol.iterator](): IterableIterator<LiveSocketBase> {
    for (let socket = this.first; socket; ) {
      const after = socket.after
      yield socket
      socket = after
    }
  }
}

const REGISTRY = 'websocket:sockets'

function registryOf(gantry: Gantry): SocketRegistry {
  let registry = gantry.state.get(REGISTRY) as SocketRegistry | undefined
  if (!registry) {
    registry = { sockets: new SocketList(), heartbeat: undefined }
    gantry.state.set(REGISTRY, registry)
  }
  return registry
}

/**
 * Origin first (a foreign page must not even learn whether its cookie works), then the caller. Throws the
 * HttpError to answer instead of upgrading.
 */
export async function guardUpgrade(gantry: Gantry, request: Request): Promise<Principal> {
  if (!originAllowed(request, gantry))
    throw new HttpError(
      403,
      'forbidden_origin',
      `Origin ${request.headers.get('origin')} may not open sockets here; add it to CORS_ORIGINS.`,
    )
  const ticket = new URL(request.url).searchParams.get('ticket')
  if (ticket) {
    const principal = await redeemTicket(gantry.db, ticket)
    if (!principal)
      throw new HttpError(
        401,
        'invalid_ticket',
        'That ticket is unknown, used or expired; get a new one from POST /api/ws-ticket.',
      )
    return principal
  }
  const principal = await authenticate(gantry, request)
  if (!principal)
    throw Unauthorized(
      'Send "Authorization: Bearer <key>", the session cookie, or ?ticket= from POST /api/ws-ticket.',
    )
  return principal
}

/**
 * Upgrades the request to `handler` through the runtime seam, or throws 400 `not_a_websocket` (a plain GET, or
 * an upgrade the runtime cannot complete). Return its result from the route. On Deno the idle timeout is two
 * heartbeat intervals: the runtime pings a quiet peer after one and closes it, with 1001, after two.
 */
export function upgradeSocket(
  gantry: Gantry,
  request: Request,
  handler: SocketHandler,
  headers?: Record<string, string | number>,
  protocol?: string,
): Response | string {
  const server = gantry.state.get('core:server') as ServerHandle | undefined
  const answer = server?.upgrade(request, handler, {
    headers: headers as Record<string, string> | undefined,
    protocol,
    idleTimeoutSeconds: (2 * gantry.config.heartbeatIntervalMs) / 1000,
  })
  if (answer === undefined)
    throw new HttpError(400, 'not_a_websocket', 'This route takes WebSocket upgrades only.')
  return answer
}

/** The LiveSocket of a raw socket opened with `openLiveSocket`, if it is still open (a scan: for tests and tools). */
export function liveSocketOf(gantry: Gantry, raw: RawSocket): LiveSocketBase | undefined {
  for (const live of registryOf(gantry).sockets) if (live.raw === raw) return live
  return undefined
}

/** Wraps an upgraded socket: heartbeat, limits, backpressure and the shutdown closer (see the file header). */
export function openLiveSocket(gantry: Gantry, raw: RawSocket, options: LiveSocketOptions = {}): LiveSocket {
  const live = new LiveSocket(gantry, limitsOf(options), options.onClose, options.logContext)
  live.attach(raw)
  return live
}

type Limits = Required<Omit<LiveSocketOptions, 'onClose' | 'logContext'>>

/** The defaults, shared by every socket that keeps them (most do): no limits object per connection. */
function limitsOf(options: LiveSocketOptions): Limits {
  const { maxFrameBytes, maxBufferedBytes, floodPerSecond, floodBurst } = options
  if (
    maxFrameBytes === undefined &&
    maxBufferedBytes === undefined &&
    floodPerSecond === undefined &&
    floodBurst === undefined
  )
    return LIVE_SOCKET_DEFAULTS
  return {
    maxFrameBytes: maxFrameBytes ?? LIVE_SOCKET_DEFAULTS.maxFrameBytes,
    maxBufferedBytes: maxBufferedBytes ?? LIVE_SOCKET_DEFAULTS.maxBufferedBytes,
    floodPerSecond: floodPerSecond ?? LIVE_SOCKET_DEFAULTS.floodPerSecond,
    floodBurst: floodBurst ?? LIVE_SOCKET_DEFAULTS.floodBurst,
  }
}

function beat(registry: SocketRegistry, interval: number): void {
  const silentSince = Date.now() - 2 * interval
  for (const live of registry.sockets) {
    // Deno pings and closes silent peers itself (the idle timeout upgradeSocket sets), and hides their pongs.
    if (live.raw.ownsHeartbeat) continue
    if (live.lastSeen < silentSince) live.terminate()
    else live.ping()
  }
}

/** Stops the heartbeat and closes every socket of this app (the websocket plugin's onStop). */
export function closeAllLiveSockets(gantry: Gantry, code: number, reason: string): void {
  const registry = registryOf(gantry)
  clearInterval(registry.heartbeat)
  registry.heartbeat = undefined
  for (const live of [...registry.sockets]) live.shut(code, reason)
}

/**
 * The socket plumbing of one connection: liveness, limits, backpressure, the shutdown closer. A handler either
 * keeps a `LiveSocket` (from `openLiveSocket`) or is one, extending this class and calling `attach(peer)` in its
 * `open` (StreamSocket does: one object per idle connection). `shut` closes it; subclasses hook `release()`.
 */
export abstract class LiveSocketBase {
  lastSeen = Date.now()
  private tokens: number
  private refilledAt = this.lastSeen
  private isClosed = false
  /**
   * The largest frame waiting since the buffer was last under the limit. A frame larger than the limit sits in
   * the buffer whole for a while even when the peer reads at full speed: only what waits besides it says that
   * the peer is not reading. What a slow peer can hold is thus its largest frame plus the limit.
   */
  private waitingFrameBytes = 0
  /** The peer, from `attach` (the runtime's `open`). */
  raw!: RawSocket
  /** Neighbours in the app's socket list (SocketList). */
  before: LiveSocketBase | undefined = undefined
  after: LiveSocketBase | undefined = undefined
  /** For `gantry.connections`: shutdown closes with 1001. */
  readonly closer = (code: number, reason: string) => this.shut(code, reason)

  constructor(
    readonly gantry: Gantry,
    readonly options: Limits = LIVE_SOCKET_DEFAULTS,
  ) {
    this.tokens = options.floodBurst
  }

  /** Joins the app's sockets: the heartbeat and, for GET /metrics and shutdown, `gantry.connections`. */
  attach(raw: RawSocket): void {
    this.raw = raw
    const registry = registryOf(this.gantry)
    registry.sockets.add(this)
    // One closer per socket: GET /metrics counts SSE streams as gantry.connections less the sockets here.
    this.gantry.connections.add(this.closer)
    if (!registry.heartbeat) {
      const interval = this.gantry.config.heartbeatIntervalMs
      registry.heartbeat = setInterval(() => beat(registry, interval), interval)
      registry.heartbeat.unref?.()
    }
  }

  /** Fields for this socket's log lines. */
  protected get logContext(): Record<string, unknown> {
    return {}
  }

  /** Runs once when the socket is gone, whoever closed it. */
  protected release(): void {}

  get isOpen(): boolean {
    return !this.isClosed && this.raw.readyState === 1
  }

  /** Any frame or pong from the peer proves it is alive. */
  seen(): void {
    this.lastSeen = Date.now()
  }

  /**
   * Checks one client frame; returns its JSON object, or undefined when the frame was refused (an `error` frame
   * was sent, or the socket closed for size or flooding).
   */
  receive(message: unknown): Record<string, unknown> | undefined {
    if (!this.isOpen) return undefined
    this.seen()
    if (!this.takeToken()) {
      this.shut(CloseCode.policyViolation, 'too many messages')
      return undefined
    }
    if (typeof message === 'string' || message instanceof Uint8Array || message instanceof ArrayBuffer) {
      const size = typeof message === 'string' ? Buffer.byteLength(message) : message.byteLength
      if (size > this.options.maxFrameBytes) {
        this.shut(CloseCode.tooBig, `frames are limited to ${this.options.maxFrameBytes} bytes`)
        return undefined
      }
    } else if (message !== null && typeof message === 'object') {
      // Elysia already parsed the JSON; bound its depth before measuring (stringify recurses), then measure.
      if (this.refusedText(message)) return undefined
      if (Buffer.byteLength(JSON.stringify(message)) > this.options.maxFrameBytes) {
        this.shut(CloseCode.tooBig, `frames are limited to ${this.options.maxFrameBytes} bytes`)
        return undefined
      }
    }
    if (message instanceof Uint8Array || message instanceof ArrayBuffer) {
      this.sendError('binary_not_supported', 'Send JSON text frames, e.g. {"type":"ping"}.')
      return undefined
    }
    let frame: unknown = message
    if (typeof message === 'string') {
      try {
        // The HTTP edge's parser: bounded depth, and no NUL or lone surrogate in any string.
        frame = parseJsonText(message, 'frame')
      } catch (err) {
        if (err instanceof HttpError && err.code !== 'invalid_json') this.sendError(err.code, err.message)
        else this.sendError('malformed_json', 'That frame is not valid JSON; send e.g. {"type":"ping"}.')
        return undefined
      }
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      this.sendError('malformed_frame', 'A frame is a JSON object with a "type", e.g. {"type":"ping"}.')
      return undefined
    }
    return frame as Record<string, unknown>
  }

  /** Sends the error frame for a pre-parsed frame too deep or with text Postgres cannot store; true if refused. */
  private refusedText(frame: object): boolean {
    try {
      const fault = findTextFault(frame, 'frame')
      if (!fault) return false
      this.sendError('validation_failed', `Invalid ${fault.path}: ${fault.message}.`)
    } catch (err) {
      this.sendError((err as HttpError).code ?? 'too_deep', (err as Error).message)
    }
    return true
  }

  /** Token bucket: a steady `floodPerSecond` with bursts up to `floodBurst`. */
  private takeToken(): boolean {
    const now = Date.now()
    this.tokens = Math.min(
      this.options.floodBurst,
      this.tokens + ((now - this.refilledAt) / 1000) * this.options.floodPerSecond,
    )
    this.refilledAt = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }

  /**
   * Sends an object (as JSON) or a prepared string. Returns false when the socket is closed, or was just closed
   * because the peer is not reading (1013).
   */
  send(message: string | object): boolean {
    if (!this.isOpen) return false
    const text = typeof message === 'string' ? message : JSON.stringify(message)
    const status = this.raw.send(text)
    // > 0: written at once, nothing waiting. 0: Bun dropped it (its own limit). -1: queued behind earlier
    // frames: check how much is waiting (only then; with 1,000 subscribers the extra call adds up).
    if (status > 0) {
      if (this.waitingFrameBytes) this.waitingFrameBytes = 0
      return true
    }
    if (status === 0 || this.overLimit(Buffer.byteLength(text))) {
      this.tooSlow()
      return false
    }
    return true
  }

  /**
   * True when more than `maxBufferedBytes` wait besides the largest frame waiting (`frameBytes`: the size of
   * one just queued): a slow reader, not a big frame on its way to a fast one.
   */
  overLimit(frameBytes?: number): boolean {
    const buffered = this.raw.getBufferedAmount()
    if (buffered <= this.options.maxBufferedBytes) {
      this.waitingFrameBytes = 0
      return false
    }
    if (frameBytes !== undefined && frameBytes > this.waitingFrameBytes) this.waitingFrameBytes = frameBytes
    return buffered - this.waitingFrameBytes > this.options.maxBufferedBytes
  }

  /** The runtime's late word that bytes are still queued (Deno, after a burst in one turn): 1013 past the limit. */
  backlog(): void {
    if (this.isOpen && this.overLimit()) this.tooSlow()
  }

  /** Past `maxBufferedBytes` not yet taken by the peer (or dropped by the runtime): 1013, and the client resumes. */
  tooSlow(): void {
    this.gantry.log.info(
      { buffered: this.raw.getBufferedAmount(), limit: this.options.maxBufferedBytes, ...this.logContext },
      'slow websocket closed',
    )
    this.shut(CloseCode.tryAgainLater, 'client too slow; reconnect with ?since=<last seq>')
  }

  sendError(error: string, message: string, details?: unknown): void {
    this.send(
      details === undefined ? { type: 'error', error, message } : { type: 'error', error, message, details },
    )
  }

  ping(): void {
    if (this.isOpen) this.raw.ping()
  }

  shut(code: number = CloseCode.normal, reason = ''): void {
    if (!this.isClosed && this.raw.readyState === 1) this.raw.close(code, reason)
    this.closed()
  }

  /** A silent peer will not answer a close frame: drop the connection. */
  terminate(): void {
    if (!this.isClosed) this.raw.terminate()
    this.closed()
  }

  /** Bookkeeping when the socket is gone; idempotent (call it from the route's `close`). */
  closed(): void {
    if (this.isClosed) return
    this.isClosed = true
    const registry = registryOf(this.gantry)
    registry.sockets.delete(this)
    this.gantry.connections.delete(this.closer)
    if (!registry.sockets.size) {
      clearInterval(registry.heartbeat)
      registry.heartbeat = undefined
    }
    try {
      this.release()
    } catch (err) {
      this.gantry.log.error({ err }, 'a socket onClose handler threw')
    }
  }
}

/** The plumbing for a handler that keeps it beside its own state (the chat socket): `onClose` and `logContext` as options. */
export class LiveSocket extends LiveSocketBase {
  constructor(
    gantry: Gantry,
    options: Limits,
    private readonly onClose?: () => void,
    private readonly context?: Record<string, unknown>,
  ) {
    super(gantry, options)
  }

  protected override get logContext(): Record<string, unknown> {
    return this.context ?? {}
  }

  protected override release(): void {
    this.onClose?.()
  }

  close(code: number = CloseCode.normal, reason = ''): void {
    this.shut(code, reason)
  }
}
