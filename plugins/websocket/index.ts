import { Elysia } from 'elysia'
import { auth, canSee } from '../../src/core/auth.ts'
import { type Gantry, gantryContext } from '../../src/core/context.ts'
import { ErrorBody, HttpError, NotFound } from '../../src/core/errors.ts'
import { STREAM_ID } from '../../src/core/events.ts'
import { parseSeq } from '../../src/core/input.ts'
import type { PluginMeta } from '../../src/core/loader.ts'
import { CloseCode, closeAllLiveSockets, guardUpgrade } from './connection.ts'
import { WsTicket } from './model.ts'
import { StreamSocket } from './stream-socket.ts'
import { issueTicket, TICKET_TTL_SECONDS } from './tickets.ts'

export const meta: PluginMeta = {
  description: 'Live task and session events over WebSocket, with replay from any seq',
  entryPoints: { stream: '/ws/:id', ticket: '/api/ws-ticket' },
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
    async beforeHandle({ gantry, request, params, server, set }) {
      const { user, info, since } = await checkStreamRequest(gantry, request, params.id)
      const socket = new StreamSocket(gantry, user, info, params.id, since)
      if (!server?.upgrade(request, { data: socket, headers: set.headers as Record<string, string> }))
        throw new HttpError(400, 'not_a_websocket', 'This route takes WebSocket upgrades only.')
      // Upgraded here, with a small `ws.data` (see stream-socket.ts): returning a value ends the request before
      // Elysia's own upgrade runs. Bun has taken the connection over and sends nothing of this answer.
      return ''
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
