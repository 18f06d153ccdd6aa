/**
 * Reusable WebSocket connection handling for Gantry's sockets (`WS /ws/:id` here, `WS /ws/chat/:session_id`
 * in the sessions plugin, which declares `meta.dependsOn: ['websocket']`).
 *
 * 1. Before the upgrade — in the `.ws()` route's `beforeHandle`, so refusals are ordinary JSON HTTP answers:
 *    `const user = await guardUpgrade(gantry, request)` checks the Origin (403 `forbidden_origin`) and the
 *    caller (`Authorization: Bearer`, the session cookie, or a single-use `?ticket=` from `POST /api/ws-ticket`;
 *    401 otherwise). Stash what `open` needs on the context (`Object.assign(ctx, { user })`): Elysia copies the
 *    context into `ws.data`.
 * 2. In `open(ws)`: `const live = openLiveSocket(gantry, ws.raw, { onClose })`. It joins the heartbeat (ping every
 *    HEARTBEAT_INTERVAL_MS, a peer silent for two intervals is terminated), registers a closer in
 *    `gantry.connections` (shutdown closes with 1001), and keeps itself reachable by `liveSocketOf(gantry, ws.raw)`.
 * 3. In `message(ws, message)`: `const frame = liveSocketOf(gantry, ws.raw)?.receive(message)`. It counts the
 *    peer as alive, closes 1009 past `maxFrameBytes` (64 KB), 1008 past the flood limit, answers an `error` frame
 *    for binary or non-JSON (the connection stays) and returns the parsed object, or undefined when handled.
 *    Elysia pre-parses JSON text: pass it as it comes, `receive` accepts both.
 * 4. Send with `live.send(objectOrString)`: past `maxBufferedBytes` not yet written to a slow peer, the socket is
 *    closed with 1013 (try again later) instead of growing memory; the client resumes with `?since=`.
 * 5. In `pong(ws)`: `liveSocketOf(gantry, ws.raw)?.seen()`; in `close(ws)`: `liveSocketOf(gantry, ws.raw)?.closed()`.
 *
 * @example
 * app.ws('/ws/chat/:session_id', {
 *   beforeHandle: async (ctx) => { Object.assign(ctx, { user: await guardUpgrade(ctx.gantry, ctx.request) }) },
 *   open: (ws) => openLiveSocket(gantry, ws.raw, { onClose: () => stopGeneration() }).send({ type: 'connected' }),
 *   message: (ws, m) => { const frame = liveSocketOf(gantry, ws.raw)?.receive(m); if (frame) handle(frame) },
 *   pong: (ws) => liveSocketOf(gantry, ws.raw)?.seen(),
 *   close: (ws) => liveSocketOf(gantry, ws.raw)?.closed(),
 * })
 */
import type { ServerWebSocket } from 'bun'
import { authenticate } from '../../src/core/auth.ts'
import type { Gantry } from '../../src/core/context.ts'
import { HttpError, Unauthorized } from '../../src/core/errors.ts'
import { originAllowed } from '../../src/core/http.ts'
import { findTextFault, parseJsonText } from '../../src/core/input.ts'
import type { Principal } from '../../src/core/keys.ts'
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

type RawSocket = ServerWebSocket<unknown>

/** The sockets of one app and their one heartbeat timer (not one per socket), kept in `gantry.state`. */
interface SocketRegistry {
  sockets: Map<RawSocket, LiveSocket>
  heartbeat: ReturnType<typeof setInterval> | undefined
}

const REGISTRY = 'websocket:sockets'

function registryOf(gantry: Gantry): SocketRegistry {
  let registry = gantry.state.get(REGISTRY) as SocketRegistry | undefined
  if (!registry) {
    registry = { sockets: new Map(), heartbeat: undefined }
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

/** Parts of the HTTP context that a WebSocket never needs after its upgrade. */
const HTTP_ONLY_KEYS = [
  'request',
  'headers',
  'cookie',
  'body',
  'server',
  'redirect',
  'qi',
  'url',
  'route',
  'path',
  'query',
  'params',
]

/**
 * Set `ctx[UPGRADE_CONTEXT] = ctx` in the route's `beforeHandle` to let `releaseHttpContext` reach the HTTP
 * context itself: Elysia keeps it alive in the closures it makes for each socket, beside the copy in `ws.data`,
 * and with it the Request, its Headers and the cookie jar.
 */
export const UPGRADE_CONTEXT = Symbol('websocket:upgrade-context')

/**
 * Elysia keeps the whole HTTP context of the upgrade (the Request, parsed headers, cookies) on every socket, in
 * two places. Call this in `open`, after reading what the socket needs: an idle connection then costs a few KB
 * less, which is most of its memory at 10,000 connections. The fields are emptied rather than deleted: a deleted
 * field turns the object into a dictionary, larger than the one it was.
 */
export function releaseHttpContext(ws: { data: unknown; raw: unknown }): void {
  const data = ws.data as Record<string | symbol, unknown> | undefined
  const copies = [data, (ws.raw as { data?: unknown }).data, data?.[UPGRADE_CONTEXT]]
  for (const copy of copies) {
    if (!copy || typeof copy !== 'object') continue
    for (const key of HTTP_ONLY_KEYS) {
      // Accessors (Elysia's `server` getter) hold nothing of their own; only values are let go.
      const field = Object.getOwnPropertyDescriptor(copy, key)
      if (field && 'value' in field && field.value !== undefined && field.writable)
        (copy as Record<string, unknown>)[key] = undefined
    }
    ;(copy as Record<symbol, unknown>)[UPGRADE_CONTEXT] = undefined
  }
}

/** The LiveSocket of a raw socket opened with `openLiveSocket`, if it is still open. */
export function liveSocketOf(gantry: Gantry, raw: RawSocket): LiveSocket | undefined {
  return registryOf(gantry).sockets.get(raw)
}

/** Wraps an upgraded socket: heartbeat, limits, backpressure and the shutdown closer (see the file header). */
export function openLiveSocket(gantry: Gantry, raw: RawSocket, options: LiveSocketOptions = {}): LiveSocket {
  const registry = registryOf(gantry)
  const live = new LiveSocket(gantry, raw, limitsOf(options), registry, options.onClose, options.logContext)
  registry.sockets.set(raw, live)
  // One closer per socket: GET /metrics counts SSE streams as gantry.connections less the sockets here.
  gantry.connections.add(live.closer)
  if (!registry.heartbeat) {
    const interval = gantry.config.heartbeatIntervalMs
    registry.heartbeat = setInterval(() => beat(registry, interval), interval)
    registry.heartbeat.unref?.()
  }
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
  for (const live of registry.sockets.values()) {
    if (live.lastSeen < silentSince) live.terminate()
    else live.ping()
  }
}

/** Stops the heartbeat and closes every socket of this app (the websocket plugin's onStop). */
export function closeAllLiveSockets(gantry: Gantry, code: number, reason: string): void {
  const registry = registryOf(gantry)
  clearInterval(registry.heartbeat)
  registry.heartbeat = undefined
  for (const live of [...registry.sockets.values()]) live.close(code, reason)
}

export class LiveSocket {
  lastSeen = Date.now()
  private tokens: number
  private refilledAt = this.lastSeen
  private isClosed = false
  /** For `gantry.connections`: shutdown closes with 1001. */
  readonly closer = (code: number, reason: string) => this.close(code, reason)

  constructor(
    readonly gantry: Gantry,
    readonly raw: RawSocket,
    readonly options: Limits,
    private readonly registry: SocketRegistry,
    private readonly onClose?: () => void,
    private readonly context?: Record<string, unknown>,
  ) {
    this.tokens = options.floodBurst
  }

  private get logContext(): Record<string, unknown> {
    return this.context ?? {}
  }

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
      this.close(CloseCode.policyViolation, 'too many messages')
      return undefined
    }
    if (typeof message === 'string' || message instanceof Uint8Array || message instanceof ArrayBuffer) {
      const size = typeof message === 'string' ? Buffer.byteLength(message) : message.byteLength
      if (size > this.options.maxFrameBytes) {
        this.close(CloseCode.tooBig, `frames are limited to ${this.options.maxFrameBytes} bytes`)
        return undefined
      }
    } else if (message !== null && typeof message === 'object') {
      // Elysia already parsed the JSON; bound its depth before measuring (stringify recurses), then measure.
      if (this.refusedText(message)) return undefined
      if (Buffer.byteLength(JSON.stringify(message)) > this.options.maxFrameBytes) {
        this.close(CloseCode.tooBig, `frames are limited to ${this.options.maxFrameBytes} bytes`)
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
    const status = this.raw.send(typeof message === 'string' ? message : JSON.stringify(message))
    // > 0: written at once, nothing waiting. 0: Bun dropped it (its own limit). -1: queued behind earlier
    // frames: check how much is waiting (only then; with 1,000 subscribers the extra call adds up).
    if (status === 0 || (status < 0 && this.raw.getBufferedAmount() > this.options.maxBufferedBytes)) {
      this.gantry.log.info(
        { buffered: this.raw.getBufferedAmount(), limit: this.options.maxBufferedBytes, ...this.logContext },
        'slow websocket closed',
      )
      this.close(CloseCode.tryAgainLater, 'client too slow; reconnect with ?since=<last seq>')
      return false
    }
    return true
  }

  sendError(error: string, message: string, details?: unknown): void {
    this.send(
      details === undefined ? { type: 'error', error, message } : { type: 'error', error, message, details },
    )
  }

  ping(): void {
    if (this.isOpen) this.raw.ping()
  }

  close(code: number = CloseCode.normal, reason = ''): void {
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
    this.registry.sockets.delete(this.raw)
    this.gantry.connections.delete(this.closer)
    if (!this.registry.sockets.size) {
      clearInterval(this.registry.heartbeat)
      this.registry.heartbeat = undefined
    }
    try {
      this.onClose?.()
    } catch (err) {
      this.gantry.log.error({ err }, 'a socket onClose handler threw')
    }
  }
}
