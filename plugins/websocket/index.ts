import { Elysia } from 'elysia'
import { auth, canSee } from '../../src/core/auth.ts'
import { type Gantry, gantryContext } from '../../src/core/context.ts'
import { ErrorBody, NotFound } from '../../src/core/errors.ts'
import {
  envelopeOf,
  STREAM_ID,
  type StoredEvent,
  type StreamInfo,
  type Subscription,
} from '../../src/core/events.ts'
import { parseSeq } from '../../src/core/input.ts'
import type { Principal } from '../../src/core/keys.ts'
import type { PluginMeta } from '../../src/core/loader.ts'
import {
  CloseCode,
  closeAllLiveSockets,
  guardUpgrade,
  type LiveSocket,
  liveSocketOf,
  openLiveSocket,
  releaseHttpContext,
  UPGRADE_CONTEXT,
} from './connection.ts'
import { MAX_GUIDANCE_CHARS, WsTicket } from './model.ts'
import { issueTicket, TICKET_TTL_SECONDS } from './tickets.ts'

export const meta: PluginMeta = {
  description: 'Live task and session events over WebSocket, with replay from any seq',
  entryPoints: { stream: '/ws/:id', ticket: '/api/ws-ticket' },
}

/** What the upgrade hands to `open`, through the context Elysia copies into `ws.data`. */
interface UpgradeData {
  user: Principal
  stream: string
  info: StreamInfo
  since: number
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

/** Auth, ownership and `since` for a stream, before any upgrade: 401/403/404/422 as plain HTTP answers. */
export async function checkStreamRequest(gantry: Gantry, request: Request, id: string) {
  const user = await guardUpgrade(gantry, request)
  const info = STREAM_ID.test(id) ? await gantry.events.streamInfo(id) : undefined
  // Another user's stream is as unknown as a missing one: no hint that it exists.
  if (!info || !canSee(user, info.ownerId)) throw NotFound(`Stream ${id}`)
  const since = parseSeq(new URL(request.url).searchParams.get('since'))
  return { user, info, since }
}

async function intervene(
  gantry: Gantry,
  live: LiveSocket,
  data: UpgradeData,
  frame: Record<string, unknown>,
) {
  if (data.info.kind !== 'task')
    return live.sendError('not_a_task', 'INTERVENTION steers a task; this is a session stream.')
  const guidance = frame.guidance
  if (typeof guidance !== 'string' || !guidance.trim() || guidance.length > MAX_GUIDANCE_CHARS)
    return live.sendError(
      'invalid_guidance',
      `INTERVENTION needs "guidance": a non-empty string of at most ${MAX_GUIDANCE_CHARS} characters.`,
    )
  const info = await gantry.events.streamInfo(data.stream)
  if (!info) return live.sendError('not_found', `Task ${data.stream} no longer exists.`)
  if (info.finished)
    return live.sendError('task_finished', `Task ${data.stream} has finished; guidance is no longer taken.`)
  try {
    // The tasks plugin acts on it; the socket sees it come back as an event like any other.
    await gantry.events.append(data.stream, 'INTERVENTION_RECEIVED', {
      guidance: guidance.trim(),
      user_id: data.user.userId,
      via: 'websocket',
    })
  } catch (err) {
    gantry.log.warn({ err: (err as Error).message, stream: data.stream }, 'intervention not recorded')
    live.sendError('not_recorded', 'The guidance could not be recorded; try again.')
  }
}

/**
 * `WS /ws/:id` (live events of a task or session, replay with `?since=`) and `POST /api/ws-ticket`.
 * The connection handling lives in connection.ts for the chat socket to reuse.
 */
export default new Elysia({ name: 'websocket', tags: ['Live'] })
  .use(gantryContext)
  .use(auth)
  .post(
    '/api/ws-ticket',
    async ({ gantry, user }) => {
      const { ticket, expiresAt } = await issueTicket(gantry.db, user)
      return { ticket, expires_at: expiresAt.toISOString(), expires_in_seconds: TICKET_TTL_SECONDS }
    },
    {
      auth: true,
      response: { 200: WsTicket, 401: ErrorBody },
      detail: {
        summary: 'Get a WebSocket ticket',
        description: `For browsers, which cannot send headers with a WebSocket: open \`/ws/<id>?ticket=<ticket>\` within ${TICKET_TTL_SECONDS} s. Each ticket works once, on any instance. Clients that can send \`Authorization: Bearer\` need no ticket.`,
      },
    },
  )
  .ws('/ws/:id', {
    async beforeHandle(ctx) {
      // Elysia runs a ws route's beforeHandle twice (as a route hook, then before upgrading): check once,
      // or the second run would find the single-use ticket already spent.
      if ((ctx as { upgrade?: UpgradeData }).upgrade) return
      const checked = await checkStreamRequest(ctx.gantry, ctx.request, ctx.params.id)
      Object.assign(ctx, {
        upgrade: { ...checked, stream: ctx.params.id } satisfies UpgradeData,
        // For releaseHttpContext in `open`: the HTTP context itself, which Elysia's socket closures keep.
        [UPGRADE_CONTEXT]: ctx,
      })
    },
    open(ws) {
      const { gantry, upgrade: data } = ws.data as unknown as { gantry: Gantry; upgrade: UpgradeData }
      releaseHttpContext(ws)
      let subscription: Subscription | undefined
      const live = openLiveSocket(gantry, ws.raw as never, {
        onClose: () => subscription?.close(),
        logContext: { stream: data.stream, userId: data.user.userId },
      })
      subscription = gantry.events.subscribe(
        data.stream,
        data.since,
        (e) => live.send(envelopeText(gantry, e)),
        {
          onEnd: (reason) => {
            if (reason === 'deleted') live.close(CloseCode.normal, 'stream deleted')
          },
        },
      )
      if (!live.isOpen) subscription.close()
    },
    message(ws, message) {
      const { gantry, upgrade: data } = ws.data as unknown as { gantry: Gantry; upgrade: UpgradeData }
      const live = liveSocketOf(gantry, ws.raw as never)
      const frame = live?.receive(message)
      if (!live || !frame) return
      switch (frame.type) {
        case 'ping':
          return void live.send({ type: 'pong', timestamp: new Date().toISOString() })
        case 'INTERVENTION':
          return intervene(gantry, live, data, frame)
        default:
          live.sendError(
            'unknown_type',
            `Unknown frame type ${JSON.stringify(frame.type ?? null)}; this socket takes "INTERVENTION" and "ping".`,
          )
      }
    },
    pong(ws) {
      // Elysia hands ping/pong handlers Bun's raw socket, not its wrapper.
      const raw = ((ws as { raw?: unknown }).raw ?? ws) as { data: { gantry: Gantry } }
      liveSocketOf(raw.data.gantry, raw as never)?.seen()
    },
    close(ws) {
      const { gantry } = ws.data as unknown as { gantry: Gantry }
      liveSocketOf(gantry, ws.raw as never)?.closed()
    },
    detail: {
      summary: 'Live events of a task or session (WebSocket)',
      description:
        'Auth before the upgrade (Bearer, session cookie or ?ticket=). `?since=<seq>` replays every event after seq, then continues live. Frames: `{type, task_id|session_id, seq, timestamp, data}`. Send `{"type":"INTERVENTION","guidance":"…"}` or `{"type":"ping"}`.',
    },
  })
  .onStop((app) =>
    closeAllLiveSockets(
      (app.decorator as { gantry: Gantry }).gantry,
      CloseCode.goingAway,
      'server shutting down',
    ),
  )
