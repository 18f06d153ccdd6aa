import { eq } from 'drizzle-orm'
import { Elysia, t } from 'elysia'
import { type Gantry, gantryContext } from '../../src/core/context.ts'
import { HttpError } from '../../src/core/errors.ts'
import type { StoredEvent, Subscription } from '../../src/core/events.ts'
import { parseSeq } from '../../src/core/input.ts'
import type { Principal } from '../../src/core/keys.ts'
import { guardUpgrade, liveSocketOf, openLiveSocket, releaseHttpContext } from '../websocket/connection.ts'
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

/**
 * One chat socket, independent of the WebSocket plumbing: `connected` on open, then the session's events
 * (replayed from `since`, else from the answer in progress, else live only), and the client's commands:
 * `{type:'chat', payload:{message, agent_name?, enable_reasoning?}}`, `{type:'cancel'}`, `{type:'ping'}`.
 * Mistakes get an `error {code, message}` frame; the socket stays open.
 */
export class ChatSocket {
  private session: SessionRow | undefined
  private subscription: Subscription | undefined
  private readonly ready: Promise<void>
  private closed = false

  constructor(
    private readonly gantry: Gantry,
    private readonly user: Principal,
    private readonly transport: ChatTransport,
    sessionRef: string,
    since: number | undefined,
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
    })
    this.subscription = this.gantry.events.subscribe(
      session.id,
      from,
      (e) => this.transport.send(frameOf(e)),
      {
        onEnd: (reason) => {
          if (reason !== 'deleted') return
          this.error('session_deleted', 'This session was deleted.')
          this.transport.close(1000, 'session deleted')
        },
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

const chats = new WeakMap<object, ChatSocket>()

/**
 * WS /ws/chat/:session_id — the original streaming-reasoning protocol over the websocket plugin's connection
 * handling (Origin and auth before the upgrade, heartbeat, frame and flood limits, backpressure, 1001 on stop).
 */
export const chatSocket = new Elysia({ name: 'sessions:ws-chat' })
  .use(gantryContext)
  .ws('/ws/chat/:session_id', {
    params: t.Object({ session_id: t.String({ minLength: 1, maxLength: 128 }) }),
    query: t.Object({
      since: t.Optional(t.String({ description: 'Seq to resume after (digits only)' })),
      ticket: t.Optional(t.String()),
    }),
    detail: {
      summary: 'Chat with streamed reasoning',
      description:
        'Sends `connected`, then reasoning deltas (`reasoning`), `reasoning_complete`, answer deltas (`content`), `tool_call`, `tool_result`, `response`, `error`, `notice` and `ping`. Send `{type:"chat", payload:{message, agent_name, enable_reasoning}}` or `{type:"cancel"}`. `?since=<seq>` resumes.',
    },
    async beforeHandle(ctx) {
      // Elysia runs a ws route's beforeHandle twice (as a route hook, then before upgrading): check once, or
      // the second run would find the single-use ticket already spent (as in the websocket plugin).
      if ((ctx as { user?: Principal }).user) return
      const user = await guardUpgrade(ctx.gantry, ctx.request)
      // The one parser of every resume position (a 422 before the upgrade); absent means "from the answer in progress".
      const raw = new URL(ctx.request.url).searchParams.get('since')
      Object.assign(ctx, { user, since: raw === null ? undefined : parseSeq(raw) })
    },
    open(ws) {
      const { gantry, user, params, since } = ws.data as typeof ws.data & {
        user: Principal
        since: number | undefined
      }
      releaseHttpContext(ws)
      let transport: ChatTransport | undefined
      const live = openLiveSocket(gantry, ws.raw as any, {
        logContext: { session: params.session_id },
        onClose: () => {
          chats.get(ws.raw)?.close()
          chats.delete(ws.raw)
          if (transport) chatPings(gantry).delete(transport)
        },
      })
      transport = {
        send: (frame) => void live.send(frame),
        close: (code, reason) => live.close(code, reason),
      }
      chatPings(gantry).add(transport)
      chats.set(ws.raw, new ChatSocket(gantry, user, transport, params.session_id, since))
    },
    async message(ws, message) {
      const gantry = (ws.data as { gantry: Gantry }).gantry
      const frame = liveSocketOf(gantry, ws.raw as any)?.receive(message)
      if (frame) await chats.get(ws.raw)?.receive(frame)
    },
    pong(ws) {
      liveSocketOf((ws.data as { gantry: Gantry }).gantry, ws.raw as any)?.seen()
    },
    close(ws) {
      liveSocketOf((ws.data as { gantry: Gantry }).gantry, ws.raw as any)?.closed()
    },
  })
