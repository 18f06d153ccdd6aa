/**
 * What the server and the plugins see of the runtime: a listening server and upgraded WebSockets, with Bun's
 * conventions (Bun is the default and the fastest path: there its own objects are these interfaces, unwrapped).
 */

/**
 * One upgraded WebSocket. On Bun it is the `ServerWebSocket` itself; on Deno a small adapter over the standard
 * `WebSocket` that `Deno.upgradeWebSocket` gives.
 */
export interface SocketPeer {
  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  readonly readyState: number
  /**
   * Bun's send status: > 0 bytes written at once, -1 queued behind frames the network has not taken yet
   * (backpressure: check `getBufferedAmount()`), 0 dropped.
   */
  send(data: string | Uint8Array): number
  /** Bytes accepted by `send` that the network has not taken yet. */
  getBufferedAmount(): number
  /** A ping frame; a no-op where the runtime runs the heartbeat itself (`ownsHeartbeat`). */
  ping(): unknown
  close(code?: number, reason?: string): void
  /** Drops the connection without a close handshake where the runtime can; else closes with 1001. */
  terminate(): void
  /**
   * True where the runtime pings idle sockets and closes silent ones itself (Deno's `idleTimeout`), and pongs
   * are not seen by the application: the app's heartbeat leaves such sockets alone. Undefined on Bun.
   */
  readonly ownsHeartbeat?: boolean
  /**
   * Joins or leaves a topic of `ServerHandle.publish` (Bun only: its `ServerWebSocket` does this natively; where
   * they are missing, send to each peer instead).
   */
  subscribe?(topic: string): void
  unsubscribe?(topic: string): void
}

/**
 * The per-connection handler given to `ServerHandle.upgrade`: its methods are called with the peer (on Bun,
 * Elysia's server-wide handler calls `ws.data.open(ws)` and so on, `ws.data` being this object). Methods on a
 * prototype shared by every connection keep an idle socket small.
 */
export interface SocketHandler {
  open(peer: SocketPeer): void
  message(peer: SocketPeer, message: string | Uint8Array): void
  close(peer: SocketPeer, code: number, reason: string): void
  /** A pong from the peer (Bun only: Deno answers pings below the application). */
  pong?(peer: SocketPeer): void
  /** The network took what was queued after a send returned -1. */
  drain?(peer: SocketPeer): void
  /**
   * Bytes are still queued for this peer after the turn in which they were sent (Deno only: it writes after the
   * turn, so a burst sent in one turn is measured only then, and no later send may come to notice it): check
   * `getBufferedAmount()` as after a send that returned -1. Called again every few ms while it stays queued.
   */
  backlog?(peer: SocketPeer): void
}

export interface UpgradeOptions {
  /** Extra response headers (Bun; Deno sends its own 101 answer). */
  headers?: Record<string, string>
  /** The subprotocol agreed with the client, if it offered one. */
  protocol?: string
  /**
   * Where the runtime runs the heartbeat (Deno): a peer silent this long is closed with 1001. Bun's server-wide
   * idle timeout (120 s, with pings) applies there instead.
   */
  idleTimeoutSeconds?: number
}

export interface ServerHandle {
  port: number
  hostname: string
  requestIP(request: Request): { address: string } | null
  /** Per-request idle timeout in seconds (0 = none), for streams that stay open (SSE). */
  timeout(request: Request, seconds: number): void
  /**
   * Upgrades a WebSocket request to `handler`. Returns what the route must answer (the runtime has taken the
   * connection over), or undefined when this is not a WebSocket request (the route answers 400).
   */
  upgrade(request: Request, handler: SocketHandler, options?: UpgradeOptions): Response | string | undefined
  /**
   * Sends one text frame to every peer subscribed to `topic` right now, in native code, in order with each peer's
   * own sends (Bun only). Returns Bun's status; nothing says which peer is slow: check their buffered amounts.
   */
  publish?(topic: string, data: string): number
  /** Stops accepting; `force` also closes open connections. */
  stop(force: boolean): Promise<void>
}

export interface ListenOptions {
  port: number
  hostname: string
  maxRequestBodySize: number
  idleTimeoutSeconds?: number
}

/** The part of an Elysia app the runtimes serve. */
export interface Servable {
  fetch: (request: Request) => Response | Promise<Response>
}
