import { Elysia } from 'elysia'
import { auth, canSee } from '../../src/core/auth.ts'
import { type Gantry, gantryContext } from '../../src/core/context.ts'
import { ErrorBody, NotFound } from '../../src/core/errors.ts'
import { STREAM_ID } from '../../src/core/events.ts'
import { parseSeq } from '../../src/core/input.ts'
import type { PluginMeta } from '../../src/core/loader.ts'
import { CloseCode, closeAllLiveSockets, guardUpgrade, upgradeSocket } from './connection.ts'
import { WsTicket } from './model.ts'
import { knownStreamInfo, noteStreamInfo } from './stream-hub.ts'
import { StreamSocket } from './stream-socket.ts'
import { issueTicket, TICKET_TTL_SECONDS } from './tickets.ts'

export const meta: PluginMeta = {
  description: 'Live task and session events over WebSocket, with replay from any seq',
  entryPoints: { stream: '/ws/:id', ticket: '/api/ws-ticket' },
}

/** Auth, ownership and `since` for a stream, before any upgrade: 401/403/404/422 as plain HTTP answers. */
export async function checkStreamRequest(gantry: Gantry, request: Request, id: string) {
  const user = await guardUpgrade(gantry, request)
  // A stream with sockets open here was read lately: a crowd reconnecting costs one query (see stream-hub.ts).
  let info = STREAM_ID.test(id) ? knownStreamInfo(gantry, id) : undefined
  if (!info && STREAM_ID.test(id)) {
    info = await gantry.events.streamInfo(id)
    noteStreamInfo(gantry, id, info)
  }
  // Another user's stream is as unknown as a missing one: no hint that it exists.
  if (!info || !canSee(user, info.ownerId)) throw NotFound(`Stream ${id}`)
  const since = parseSeq(new URL(request.url).searchParams.get('since'))
  return { user, info, since }
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
  .get(
    '/ws/:id',
    async ({ gantry, request, params, set }) => {
      const { user, info, since } = await checkStreamRequest(gantry, request, params.id)
      // Upgraded here, with a small handler per connection (see stream-socket.ts) rather than through Elysia's
      // `.ws()`, which exists only on Bun and gives every socket a copy of the HTTP context.
      return upgradeSocket(
        gantry,
        request,
        new StreamSocket(gantry, user.userId, info.kind === 'task', params.id, since),
        set.headers,
      )
    },
    {
      detail: {
        summary: 'Live events of a task or session (WebSocket)',
        description:
          'Auth before the upgrade (Bearer, session cookie or ?ticket=). `?since=<seq>` replays every event after seq, then continues live. Frames: `{type, task_id|session_id, seq, timestamp, data}`. Send `{"type":"INTERVENTION","guidance":"…"}` or `{"type":"ping"}`.',
      },
    },
  )
  .onStop((app) =>
    closeAllLiveSockets(
      (app.decorator as { gantry: Gantry }).gantry,
      CloseCode.goingAway,
      'server shutting down',
    ),
  )
