import { eq } from 'drizzle-orm'
import { Elysia, t } from 'elysia'
import { type Gantry, gantryContext } from '../../src/core/context.ts'
import { HttpError, Unprocessable } from '../../src/core/errors.ts'
import type { StoredEvent, Subscription, TentativeEvent, TentativeHandlers } from '../../src/core/events.ts'
import { parseSeq } from '../../src/core/input.ts'
import type { Principal } from '../../src/core/keys.ts'
import type { SocketHandler, SocketPeer } from '../../src/core/runtime.ts'
import { guardUpgrade, type LiveSocket, openLiveSocket, upgradeSocket } from '../websocket/connection.ts'
import { cancelChat, startChat } from './chat.ts'
import { MESSAGE_MAX_CHARS } from './model.ts'
import { chatMessages } from './schema.ts'
import { getOrCreateSession, type SessionRow } from './service.ts'

/** A frame of the chat protocol: `{type, ...}`; events from the log also carry their `seq` (resume with ?since=). */
export type Frame = { type: string; [key: string]: unknown }

export interface ChatTransport {
  send(frame: Frame): void
  close(code: number, reason: string): void
}

const frameOf = (e: StoredEvent): Frame => ({
  ...(e.data as Record<string, unknown>),
  type: e.type,
  seq: e.seq,
})

/** The events a socket that opted in (`?tentative=1`) is shown before their commit: the answer's text deltas. */
const TENTATIVE_TYPES = new Set(['content', 'reasoning'])

/** How long acknowledgements wait to be sent together: they move the resume point, never show text. */
export const ACK_DELAY_MS = 40

/**
 * Live tokens before the commit, for a socket that asked for them. A tentative frame is the delta without a
 * `seq`, with `tentative: <id>` instead. `ack {seq, tentative: [ids]}` says those frames are committed and so
 * is every event up to `seq` (the resume point moves there); `retract {tentative: [ids]}` says they will never
 * commit: drop them. A socket that closes takes its unacknowledged frames with it (the client drops them and
 * resumes by the last seq it has). Only the instance generating an answer shows it tentatively.
 *
 * Acks of consecutive events are sent as one frame, at most ACK_DELAY_MS late, and always before the next
 * frame with a seq: a frame per token and not two, and seqs still reach the client in order.
 */
class TentativeFrames implements TentativeHandlers {
  private ackSeq = 0
  private acked: number[] = []
  private timer: ReturnType<typeof setTimeout> | undefined = undefined

  constructor(private readonly transport: ChatTransport) {}

  onEvent(e: TentativeEvent): boolean {
    if (!TENTATIVE_TYPES.has(e.type)) return false
    this.transport.send({ ...(e.data as Record<string, unknown>), type: e.type, tentative: e.tentative })
    return true
  }

  onAck(seq: number, tentative: number[]): void {
    this.ackSeq = seq
    for (const id of tentative) this.acked.push(id)
    this.timer ??= setTimeout(() => this.flush(), ACK_DELAY_MS)
  }

  onRetract(tentative: number[]): void {
    this.transport.send({ type: 'retract', tentative })
  }

  /** Sends the acks gathered so far (before any frame with a seq, and on the timer). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (!this.acked.length) return
    const tentative = this.acked
    this.acked = []
    this.transport.send({ type: 'ack', seq: this.ackSeq, tentative })
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.acked = []
  }
}

/** `?tentative=`: 1/true opts in to live tokens before their commit, 0/false (or absent) keeps to committed events. */
export function parseTentative(raw: string | null): boolean {
  if (raw === null || raw === '0' || raw === 'false') return false
  if (raw === '1' || raw === 'true') return true
  throw Unprocessable('query/tentative must be 1, true, 0 or false.', [
    { path: 'query/tentative', message: 'expected 1, true, 0 or false' },
  ])
}

/**
 * One chat socket, independent of the WebSocket plumbing: `connected` on open, then the session's events
 * (replayed from `since`, else from the answer in progress, else live only), and the client's commands:
 * `{type:'chat', payload:{message, agent_name?, enable_reasoning?}}`, `{type:'cancel'}`, `{type:'ping'}`.
 * Mistakes get an `error {code, message}` frame; the socket stays open.
 */
export class ChatSocket {
  private session: SessionRow | undefined
  private subscription: Subscription | undefined
  private frames: TentativeFrames | undefined
  private readonly ready: Promise<void>
  private closed = false

  constructor(
    private readonly gantry: Gantry,
    private readonly user: Principal,
    private readonly transport: ChatTransport,
    sessionRef: string,
    since: number | undefined,
    private readonly tentative = false,
  ) {
    this.ready = this.open(sessionRef, since).catch((err) => {
      const e = err instanceof HttpError ? err : undefined
      this.error(e?.code ?? 'internal_error', e?.message ?? 'Could not open the session.')
      this.transport.close(e?.status === 404 ? 4404 : 1011, e?.message.slice(0, 100) ?? 'error')
    })
  }

  private async open(sessionRef: string, since: number | undefined): Promise<void> {
    const session = await getOrCreateSession(this.gantry, this.user, sessionRef)
    this.session = session
    const head = await this.gantry.events.head(session.id)
    let from = since ?? head
    if (since === undefined && session.activeMessageId) {
      // Coming back mid-answer: the text so far, then the rest live.
      const [active] = await this.gantry.db
        .select({ streamSeq: chatMessages.streamSeq })
        .from(chatMessages)
        .where(eq(chatMessages.id, session.activeMessageId))
      if (active?.streamSeq != null) from = active.streamSeq
    }
    if (this.closed) return
    this.transport.send({
      type: 'connected',
      session_id: session.id,
      name: session.name,
      agent: session.agent,
      model: session.model ?? this.gantry.config.ollamaModel,
      head,
      since: from,
      generating: session.activeMessageId !== null,
      active_message_id: session.activeMessageId,
      heartbeat_ms: this.gantry.config.heartbeatIntervalMs,
      ...(this.tentative ? { tentative: true } : {}),
    })
    const frames = this.tentative ? new TentativeFrames(this.transport) : undefined
    this.frames = frames
    this.subscription = this.gantry.events.subscribe(
      session.id,
      from,
      (e) => {
        frames?.flush()
        this.transport.send(frameOf(e))
      },
      {
        onEnd: (reason) => {
          if (reason !== 'deleted') return
          this.error('session_deleted', 'This session was deleted.')
          this.transport.close(1000, 'session deleted')
        },
        tentative: frames,
      },
    )
  }

  async receive(raw: unknown): Promise<void> {
    await this.ready
    if (this.closed || !this.session) return
    let msg: any = raw
    if (typeof raw === 'string') {
      try {
        msg = JSON.parse(raw)
      } catch {
        return this.error(
          'invalid_json',
          'That frame is not valid JSON; send {"type": "chat", "payload": {...}}.',
        )
      }
    }
    if (!msg || typeof msg !== 'object' || Array.isArray(msg) || typeof msg.type !== 'string')
      return this.error(
        'invalid_message',
        'A frame is a JSON object with a string "type" (chat, cancel or ping).',
      )
    switch (msg.type) {
      case 'chat':
        return this.chat(msg.payload)
      case 'cancel': {
        const messageId = await cancelChat(this.gantry, this.session).catch(() => null)
        if (!messageId)
          this.transport.send({
            type: 'notice',
            code: 'nothing_to_cancel',
            message: 'No answer is being generated.',
          })
        return
      }
      case 'ping':
        return this.transport.send({ type: 'pong', ts: Date.now() })
      case 'pong':
        return
      default:
        return this.error(
          'unknown_type',
          `Unknown message type "${String(msg.type).slice(0, 40)}"; send chat, cancel or ping.`,
        )
    }
  }

  private async chat(payload: any): Promise<void> {
    if (!payload || typeof payload !== 'object')
      return this.error(
        'invalid_message',
        'A chat frame needs a payload: {message, agent_name?, enable_reasoning?}.',
      )
    const { message, agent_name, enable_reasoning } = payload
    if (typeof message !== 'string' || !message.trim())
      return this.error('validation_failed', 'payload.message must be a non-empty string.')
    if (message.length > MESSAGE_MAX_CHARS)
      return this.error(
        'validation_failed',
        `payload.message is ${message.length} characters; the limit is ${MESSAGE_MAX_CHARS}.`,
      )
    if (agent_name != null && typeof agent_name !== 'string')
      return this.error('validation_failed', 'payload.agent_name must be a string.')
    if (enable_reasoning != null && typeof enable_reasoning !== 'boolean')
      return this.error('validation_failed', 'payload.enable_reasoning must be true or false.')
    try {
      const started = await startChat(this.gantry, this.user, this.session!, {
        message,
        agent_name: agent_name ?? undefined,
        enable_reasoning: enable_reasoning ?? undefined,
      })
      this.transport.send({
        type: 'accepted',
        message_id: started.userMessageId,
        assistant_message_id: started.assistantMessageId,
      })
    } catch (err) {
      if (err instanceof HttpError) return this.error(err.code, err.message, err.details)
      this.gantry.log.error({ err, stream: this.session?.id }, 'chat over websocket failed')
      this.error('internal_error', 'Could not start the answer; try again.')
    }
  }

  private error(code: string, message: string, details?: unknown): void {
    // `error` repeats the code: the websocket plugin's own refusals (malformed JSON, binary) name it so.
    this.transport.send({
      type: 'error',
      code,
      error: code,
      message,
      ...(details === undefined ? {} : { details }),
    })
  }

  close(): void {
    this.closed = true
    this.subscription?.close()
    this.frames?.close()
  }
}

/** One JSON `ping` frame per heartbeat for every chat socket of this app (the original protocol's pings). */
function chatPings(gantry: Gantry): Set<ChatTransport> {
  let state = gantry.state.get('sessions:chat-sockets') as
    | { sockets: Set<ChatTransport>; timer?: ReturnType<typeof setInterval> }
    | undefined
  if (!state) {
    state = { sockets: new Set() }
    gantry.state.set('sessions:chat-sockets', state)
  }
  const s = state
  if (!s.timer) {
    s.timer = setInterval(() => {
      if (!s.sockets.size) {
        clearInterval(s.timer)
        s.timer = undefined
        return
      }
      const frame = { type: 'ping', ts: Date.now() }
      for (const socket of s.sockets) socket.send(frame)
    }, gantry.config.heartbeatIntervalMs)
    s.timer.unref?.()
  }
  return s.sockets
}

/**
 * One chat connection as the runtime seam sees it: the socket plumbing (LiveSocket, the JSON pings) around a
 * ChatSocket. Methods on the prototype, shared by every connection.
 */
class ChatConnection implements SocketHandler {
  private live: LiveSocket | undefined = undefined
  private chat: ChatSocket | undefined = undefined
  private transport: ChatTransport | undefined = undefined

  constructor(
    private readonly gantry: Gantry,
    private readonly user: Principal,
    private readonly sessionRef: string,
    private readonly since: number | undefined,
    private readonly tentative: boolean,
  ) {}

  open(peer: SocketPeer): void {
    const { gantry } = this
    const live = openLiveSocket(gantry, peer, {
      logContext: { session: this.sessionRef },
      onClose: () => {
        this.chat?.close()
        if (this.transport) chatPings(gantry).delete(this.transport)
      },
    })
    this.live = live
    const transport: ChatTransport = {
      send: (frame) => void live.send(frame),
      close: (code, reason) => live.close(code, reason),
    }
    this.transport = transport
    chatPings(gantry).add(transport)
    this.chat = new ChatSocket(gantry, this.user, transport, this.sessionRef, this.since, this.tentative)
  }

  message(_peer: SocketPeer, message: string | Uint8Array): void {
    const frame = this.live?.receive(message)
    if (frame)
      this.chat
        ?.receive(frame)
        .catch((err) => this.gantry.log.error({ err, session: this.sessionRef }, 'chat frame failed'))
  }

  pong(): void {
    this.live?.seen()
  }

  backlog(): void {
    this.live?.backlog()
  }

  close(): void {
    this.live?.closed()
  }
}

/**
 * WS /ws/chat/:session_id — the original streaming-reasoning protocol over the websocket plugin's connection
 * handling (Origin and auth before the upgrade, heartbeat, frame and flood limits, backpressure, 1001 on stop).
 */
export const chatSocket = new Elysia({ name: 'sessions:ws-chat' }).use(gantryContext).get(
  '/ws/chat/:session_id',
  async ({ gantry, request, params, set }) => {
    const user = await guardUpgrade(gantry, request)
    // The one parser of every resume position (a 422 before the upgrade); absent means "from the answer in progress".
    const query = new URL(request.url).searchParams
    const raw = query.get('since')
    const since = raw === null ? undefined : parseSeq(raw)
    const tentative = parseTentative(query.get('tentative'))
    return upgradeSocket(
      gantry,
      request,
      new ChatConnection(gantry, user, params.session_id, since, tentative),
      set.headers,
    )
  },
  {
    params: t.Object({ session_id: t.String({ minLength: 1, maxLength: 128 }) }),
    query: t.Object({
      since: t.Optional(t.String({ description: 'Seq to resume after (digits only)' })),
      tentative: t.Optional(
        t.String({
          description:
            '1: answer deltas from the generating instance before their commit (tentative frames, then ack or retract)',
        }),
      ),
      ticket: t.Optional(t.String()),
    }),
    detail: {
      summary: 'Chat with streamed reasoning',
      description:
        'Sends `connected`, then reasoning deltas (`reasoning`), `reasoning_complete`, answer deltas (`content`), `tool_call`, `tool_result`, `response`, `error`, `notice` and `ping`. Send `{type:"chat", payload:{message, agent_name, enable_reasoning}}` or `{type:"cancel"}`. `?since=<seq>` resumes. `?tentative=1` adds answer deltas before their commit: frames with `tentative` instead of `seq`, then `ack {seq, tentative}` or `retract {tentative}`.',
    },
  },
)
