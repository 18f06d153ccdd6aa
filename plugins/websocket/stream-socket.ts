/**
 * One `WS /ws/:id` connection: the handler the runtime seam calls (on Bun it is the socket's `ws.data`), and the
 * socket's plumbing itself (it extends LiveSocketBase): one object per idle connection, with no closure, options
 * object or subscription of its own. The route upgrades the request itself (see index.ts) rather than through
 * Elysia's `.ws()` upgrade, which exists only on Bun and gives every socket a copy of the HTTP context and nine
 * closures. `open(peer)`, `.message(peer, m)`, `.pong(peer)` and `.close(peer)` are methods on the prototype.
 * Events come from the stream's hub (stream-hub.ts): one subscription and one publish for all its sockets.
 */
import type { Gantry } from '../../src/core/context.ts'
import type { Subscription } from '../../src/core/events.ts'
import type { SocketHandler, SocketPeer } from '../../src/core/runtime.ts'
import { LiveSocketBase } from './connection.ts'
import { MAX_GUIDANCE_CHARS } from './model.ts'
import { joinStream, type StreamHub } from './stream-hub.ts'

export class StreamSocket extends LiveSocketBase implements SocketHandler {
  /** The hub of the stream, from `open`. */
  hub: StreamHub | undefined = undefined
  /** Its own subscription while it catches up with the hub; undefined once it is in the hub's live list. */
  catchUp: Subscription | undefined = undefined
  /** The hub's live list. */
  prev: StreamSocket | undefined = undefined
  next: StreamSocket | undefined = undefined

  constructor(
    gantry: Gantry,
    readonly userId: string,
    readonly isTask: boolean,
    public stream: string,
    /** The last seq this socket was sent: its `since` until it has more (kept current while it catches up). */
    public pos: number,
  ) {
    super(gantry)
  }

  protected override get logContext(): Record<string, unknown> {
    return { stream: this.stream, userId: this.userId }
  }

  open(raw: SocketPeer): void {
    this.attach(raw)
    joinStream(this.gantry, this, this.stream)
    // The hub's copy of the id: the request's own goes with the request.
    this.stream = this.hub!.stream
  }

  message(_raw: SocketPeer, message: string | Uint8Array): void {
    // Text arrives unparsed: receive() parses it with the HTTP edge's bounded JSON parser.
    const frame = this.receive(message)
    if (!frame) return
    switch (frame.type) {
      case 'ping':
        this.send({ type: 'pong', timestamp: new Date().toISOString() })
        return
      case 'INTERVENTION':
        intervene(this, frame).catch((err) =>
          this.gantry.log.error({ err, stream: this.stream }, 'intervention failed'),
        )
        return
      default:
        this.sendError(
          'unknown_type',
          `Unknown frame type ${JSON.stringify(frame.type ?? null)}; this socket takes "INTERVENTION" and "ping".`,
        )
    }
  }

  pong(): void {
    this.seen()
  }

  close(): void {
    this.closed()
  }

  protected override release(): void {
    this.hub?.remove(this)
  }
}

async function intervene(socket: StreamSocket, frame: Record<string, unknown>) {
  const { gantry, stream } = socket
  if (!socket.isTask)
    return socket.sendError('not_a_task', 'INTERVENTION steers a task; this is a session stream.')
  const guidance = frame.guidance
  if (typeof guidance !== 'string' || !guidance.trim() || guidance.length > MAX_GUIDANCE_CHARS)
    return socket.sendError(
      'invalid_guidance',
      `INTERVENTION needs "guidance": a non-empty string of at most ${MAX_GUIDANCE_CHARS} characters.`,
    )
  const info = await gantry.events.streamInfo(stream)
  if (!info) return socket.sendError('not_found', `Task ${stream} no longer exists.`)
  if (info.finished)
    return socket.sendError('task_finished', `Task ${stream} has finished; guidance is no longer taken.`)
  try {
    // The tasks plugin acts on it; the socket sees it come back as an event like any other.
    await gantry.events.append(stream, 'INTERVENTION_RECEIVED', {
      guidance: guidance.trim(),
      user_id: socket.userId,
      via: 'websocket',
    })
  } catch (err) {
    gantry.log.warn({ err: (err as Error).message, stream }, 'intervention not recorded')
    socket.sendError('not_recorded', 'The guidance could not be recorded; try again.')
  }
}
