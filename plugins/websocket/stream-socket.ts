/**
 * One `WS /ws/:id` connection as Bun keeps it: the `ws.data` of the upgrade. The route upgrades the request
 * itself (see index.ts) rather than through Elysia's `.ws()` upgrade, which gives every socket a copy of the HTTP
 * context, six handler closures, a response handler, a message parser and an error handler list of its own:
 * about half of an idle socket's memory. Elysia's server-wide WebSocket handler calls `ws.data.open(ws)`,
 * `.message(ws, m)`, `.pong(ws)` and `.close(ws)`; here they are methods on the prototype, shared by all sockets.
 */
import type { ServerWebSocket } from 'bun'
import type { Gantry } from '../../src/core/context.ts'
import { envelopeOf, type StoredEvent, type StreamInfo, type Subscription } from '../../src/core/events.ts'
import type { Principal } from '../../src/core/keys.ts'
import { CloseCode, type LiveSocket, openLiveSocket } from './connection.ts'
import { MAX_GUIDANCE_CHARS } from './model.ts'

type RawSocket = ServerWebSocket<unknown>

export class StreamSocket {
  private live: LiveSocket | undefined = undefined
  private subscription: Subscription | undefined = undefined

  constructor(
    readonly gantry: Gantry,
    readonly user: Principal,
    readonly info: StreamInfo,
    readonly stream: string,
    private readonly since: number,
  ) {}

  open(raw: RawSocket): void {
    const { gantry, stream } = this
    const live = openLiveSocket(gantry, raw, {
      onClose: () => this.subscription?.close(),
      logContext: { stream, userId: this.user.userId },
    })
    this.live = live
    this.subscription = gantry.events.subscribe(
      stream,
      this.since,
      (e) => live.send(envelopeText(gantry, e)),
      {
        onEnd: (reason) => {
          if (reason === 'deleted') live.close(CloseCode.normal, 'stream deleted')
        },
      },
    )
    if (!live.isOpen) this.subscription.close()
  }

  message(_raw: RawSocket, message: string | Buffer): void {
    const live = this.live
    // Text arrives unparsed: LiveSocket parses it with the HTTP edge's bounded JSON parser.
    const frame = live?.receive(message)
    if (!live || !frame) return
    switch (frame.type) {
      case 'ping':
        live.send({ type: 'pong', timestamp: new Date().toISOString() })
        return
      case 'INTERVENTION':
        intervene(this, live, frame).catch((err) =>
          this.gantry.log.error({ err, stream: this.stream }, 'intervention failed'),
        )
        return
      default:
        live.sendError(
          'unknown_type',
          `Unknown frame type ${JSON.stringify(frame.type ?? null)}; this socket takes "INTERVENTION" and "ping".`,
        )
    }
  }

  pong(): void {
    this.live?.seen()
  }

  close(): void {
    this.live?.closed()
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

async function intervene(socket: StreamSocket, live: LiveSocket, frame: Record<string, unknown>) {
  const { gantry, stream } = socket
  if (socket.info.kind !== 'task')
    return live.sendError('not_a_task', 'INTERVENTION steers a task; this is a session stream.')
  const guidance = frame.guidance
  if (typeof guidance !== 'string' || !guidance.trim() || guidance.length > MAX_GUIDANCE_CHARS)
    return live.sendError(
      'invalid_guidance',
      `INTERVENTION needs "guidance": a non-empty string of at most ${MAX_GUIDANCE_CHARS} characters.`,
    )
  const info = await gantry.events.streamInfo(stream)
  if (!info) return live.sendError('not_found', `Task ${stream} no longer exists.`)
  if (info.finished)
    return live.sendError('task_finished', `Task ${stream} has finished; guidance is no longer taken.`)
  try {
    // The tasks plugin acts on it; the socket sees it come back as an event like any other.
    await gantry.events.append(stream, 'INTERVENTION_RECEIVED', {
      guidance: guidance.trim(),
      user_id: socket.user.userId,
      via: 'websocket',
    })
  } catch (err) {
    gantry.log.warn({ err: (err as Error).message, stream }, 'intervention not recorded')
    live.sendError('not_recorded', 'The guidance could not be recorded; try again.')
  }
}
