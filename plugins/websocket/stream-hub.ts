/**
 * The `WS /ws/:id` sockets of one stream on this instance: ONE event-log subscription for all of them (not one
 * per socket), a list of the sockets that are caught up with it, and one serialisation and, on Bun, one native
 * `server.publish` per event for all of those.
 *
 * The hub's subscription delivers every seq exactly once, in order; `pos` is the last one the hub fanned out. A
 * socket whose `since` equals `pos` joins the live list at once (the common case: a new stream, a reconnect at
 * the head). Any other socket first catches up on a subscription of its own (the log's replay-then-live, exact at
 * its seam) and joins when its last seq equals the hub's: checked after each event either side delivers, so
 * whichever reaches the other's seq second makes the move, synchronously, between two events. From then on it
 * gets exactly the events after that seq, from the hub: no gap, no duplicate.
 *
 * Slow readers: publish writes to every subscriber at once, as a send does, and answers -1 when any of them has
 * frames waiting (0 when one was dropped); only then are the live sockets scanned, and each one with more than
 * `maxBufferedBytes` not yet taken by the network is closed with 1013, as a send past the limit would. Bun drops
 * frames past its own limit (16 MB), so an event too big to stay under it once ours is passed goes socket by
 * socket instead, where a drop closes that socket with 1013.
 */
import type { Gantry } from '../../src/core/context.ts'
import { envelopeOf, type StoredEvent, type StreamInfo, type Subscription } from '../../src/core/events.ts'
import type { ServerHandle } from '../../src/core/runtime.ts'
import { CloseCode } from './connection.ts'
import type { StreamSocket } from './stream-socket.ts'

const HUBS = 'websocket:hubs'
/** How long a hub answers `knownStreamInfo` after a read (as long as the principal cache keeps a credential). */
const INFO_TTL_MS = 2000
/** Events up to this many UTF-16 units (≤ 3 MB as UTF-8) go out by publish; 1 MB buffered + 3 MB < Bun's 16 MB. */
const PUBLISH_MAX_CHARS = 1024 * 1024

/** Joins `socket` (just opened, its `pos` at its `since`) to its stream's hub, creating the hub if needed. */
export function joinStream(gantry: Gantry, socket: StreamSocket, stream: string): void {
  let hubs = gantry.state.get(HUBS) as Map<string, StreamHub> | undefined
  if (!hubs) {
    hubs = new Map()
    gantry.state.set(HUBS, hubs)
  }
  let hub = hubs.get(stream)
  if (!hub) {
    hub = new StreamHub(gantry, stream, socket.pos, hubs)
    hubs.set(stream, hub)
  }
  hub.add(socket)
}

/**
 * The owner and kind of a stream with sockets open here, as read from the table within the last INFO_TTL_MS:
 * a crowd (re)connecting to one stream costs one `streamInfo` query, not one each. Deletion drops the hub at
 * once (here, or by another instance's doorbell); the TTL bounds how long a lost doorbell could hide it.
 */
export function knownStreamInfo(gantry: Gantry, stream: string): StreamInfo | undefined {
  const hub = (gantry.state.get(HUBS) as Map<string, StreamHub> | undefined)?.get(stream)
  return hub?.info && hub.infoUntil > Date.now() ? hub.info : undefined
}

/** Keeps what `streamInfo` just read for `knownStreamInfo`, when the stream has a hub. */
export function noteStreamInfo(gantry: Gantry, stream: string, info: StreamInfo | undefined): void {
  const hub = (gantry.state.get(HUBS) as Map<string, StreamHub> | undefined)?.get(stream)
  if (!hub || !info) return
  hub.info = info
  hub.infoUntil = Date.now() + INFO_TTL_MS
}

/** Hubs open on this instance (tests and benchmarks). */
export function hubsOf(gantry: Gantry): ReadonlyMap<string, StreamHub> {
  return (gantry.state.get(HUBS) as Map<string, StreamHub> | undefined) ?? new Map()
}

export class StreamHub {
  /** The last seq fanned out to the live sockets. */
  pos: number
  /** Live sockets, in a list through their `prev`/`next`: no hash entry per socket. */
  size = 0
  private first: StreamSocket | undefined
  /** Sockets catching up on a subscription of their own. */
  readonly behind = new Set<StreamSocket>()
  private readonly subscription: Subscription
  private readonly server: ServerHandle | undefined
  /** The Bun topic of the live sockets (server-wide; one server per app). */
  private readonly topic: string
  private gone = false
  info: StreamInfo | undefined = undefined
  infoUntil = 0

  constructor(
    readonly gantry: Gantry,
    readonly stream: string,
    since: number,
    private readonly hubs: Map<string, StreamHub>,
  ) {
    this.pos = since
    this.topic = `events:${stream}`
    const server = gantry.state.get('core:server') as ServerHandle | undefined
    this.server = server?.publish ? server : undefined
    this.subscription = gantry.events.subscribe(stream, since, (e) => this.deliver(e), {
      onEnd: (reason) => {
        if (reason === 'deleted') this.deleted()
      },
    })
  }

  add(socket: StreamSocket): void {
    socket.hub = this
    if (socket.pos === this.pos) {
      this.join(socket)
      return
    }
    this.behind.add(socket)
    socket.catchUp = this.gantry.events.subscribe(this.stream, socket.pos, (e) => this.caughtUp(socket, e), {
      onEnd: (reason) => {
        if (reason === 'deleted') socket.shut(CloseCode.normal, 'stream deleted')
      },
    })
  }

  /** The socket is gone (any close): out of the list and the topic, or its own subscription closed. */
  remove(socket: StreamSocket): void {
    if (socket.catchUp) {
      socket.catchUp.close()
      socket.catchUp = undefined
      this.behind.delete(socket)
    } else if (socket.prev || this.first === socket) {
      if (socket.prev) socket.prev.next = socket.next
      else this.first = socket.next
      if (socket.next) socket.next.prev = socket.prev
      socket.prev = socket.next = undefined
      this.size--
      if (socket.raw.readyState === 1) socket.raw.unsubscribe?.(this.topic)
    }
    if (!this.size && !this.behind.size) this.close()
  }

  private join(socket: StreamSocket): void {
    if (socket.catchUp) {
      socket.catchUp.close()
      socket.catchUp = undefined
      this.behind.delete(socket)
    }
    socket.next = this.first
    if (this.first) this.first.prev = socket
    this.first = socket
    this.size++
    if (this.server) socket.raw.subscribe?.(this.topic)
  }

  /** The hub's subscription: event `pos + 1`. */
  private deliver(e: StoredEvent): void {
    this.pos = e.seq
    if (this.first) this.fanOut(envelopeText(this.gantry, e))
    // Sockets that got this event on their own subscription first are now level with the hub.
    if (this.behind.size) for (const socket of this.behind) if (socket.pos === this.pos) this.join(socket)
  }

  /** A catching-up socket's own subscription: event `socket.pos + 1`. */
  private caughtUp(socket: StreamSocket, e: StoredEvent): void {
    socket.pos = e.seq
    socket.send(envelopeText(this.gantry, e))
    if (socket.pos === this.pos && socket.catchUp) this.join(socket)
  }

  private fanOut(text: string): void {
    const server = this.server
    if (server && text.length <= PUBLISH_MAX_CHARS) {
      // Like a send, publish writes at once and says -1 when any subscriber has frames waiting (0: dropped for
      // one): only then look for the ones past the limit.
      if (server.publish!(this.topic, text) > 0) return
      const bytes = Buffer.byteLength(text)
      for (let socket = this.first; socket; ) {
        const next = socket.next
        if (socket.overLimit(bytes)) socket.tooSlow()
        socket = next
      }
      return
    }
    for (let socket = this.first; socket; ) {
      const next = socket.next
      try {
        socket.send(text)
      } catch (err) {
        this.gantry.log.error({ err, stream: this.stream }, 'a websocket send threw')
      }
      socket = next
    }
  }

  private deleted(): void {
    this.forget()
    for (let socket = this.first; socket; ) {
      const next = socket.next
      socket.shut(CloseCode.normal, 'stream deleted')
      socket = next
    }
  }

  private close(): void {
    this.forget()
    this.subscription.close()
  }

  private forget(): void {
    if (this.gone) return
    this.gone = true
    if (this.hubs.get(this.stream) === this) this.hubs.delete(this.stream)
  }
}

/** Every subscriber of a stream gets the same event object: serialise it once for all of them. */
function envelopeText(gantry: Gantry, e: StoredEvent): string {
  let cache = gantry.state.get('websocket:envelopes') as WeakMap<StoredEvent, string> | undefined
  if (!cache) {
    cache = new WeakMap()
    gantry.state.set('websocket:envelopes', cache)
  }
  let text = cache.get(e)
  if (!text) {
    text = JSON.stringify(envelopeOf(e))
    cache.set(e, text)
  }
  return text
}
