import { Elysia } from 'elysia'
import { auth, canSee, type Principal } from '../../src/core/auth.ts'
import { type Gantry, gantryContext } from '../../src/core/context.ts'
import { ErrorBody, NotFound } from '../../src/core/errors.ts'
import { envelopeOf, STREAM_ID, type StoredEvent, type StreamInfo } from '../../src/core/events.ts'
import type { PluginMeta } from '../../src/core/loader.ts'
import {
  EventStreamBody,
  EventsQuery,
  type SERVER_LOG_LEVELS,
  ServerLogQuery,
  StreamQuery,
  TaskLogsPage,
  TaskLogsQuery,
} from './model.ts'
import { levelsFrom, logLine, readTaskLogs, resumeSeq, taskLogOf } from './service.ts'
import { type SseMessage, sseResponse } from './sse.ts'

export const meta: PluginMeta = {
  description:
    'Task logs as JSON pages and live SSE, an SSE mirror of every event stream, and the server log',
  entryPoints: {
    taskLogs: '/tasks/:id/logs',
    events: '/api/streams/:id/events',
    serverLog: '/api/logs/stream',
  },
}

/** The stream, if this caller may see it; another user's stream is as unknown as a missing one. */
async function visibleStream(
  gantry: Gantry,
  user: Principal,
  id: string,
  kind?: 'task',
): Promise<StreamInfo> {
  const info = STREAM_ID.test(id) ? await gantry.events.streamInfo(id) : undefined
  if (!info || !canSee(user, info.ownerId) || (kind && info.kind !== kind))
    throw NotFound(`${kind === 'task' ? 'Task' : 'Stream'} ${id}`)
  return info
}

const PINO_LEVELS: Record<(typeof SERVER_LOG_LEVELS)[number], number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
}

/**
 * A stream's events as SSE from `since` on: each event becomes the message `toMessage` makes of it (or none),
 * and `event: end` closes the stream once the task or session has finished or is gone.
 */
function eventStream(
  gantry: Gantry,
  request: Request,
  stream: string,
  since: number,
  toMessage: (e: StoredEvent) => SseMessage | undefined,
): Response {
  return sseResponse(gantry, request, (sink) => {
    const subscription = gantry.events.subscribe(
      stream,
      since,
      (e) => {
        const message = toMessage(e)
        if (message) sink.send(message)
      },
      {
        onEnd: (reason) => {
          sink.send({ event: 'end', data: reason })
          sink.close()
        },
      },
    )
    return () => subscription.close()
  })
}

const sseErrors = { 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 422: ErrorBody }

/**
 * `GET /tasks/:id/logs` (JSON pages), `GET /tasks/:id/logs/stream` (SSE), `GET /api/streams/:id/events` (the
 * WebSocket's events as SSE) and `GET /api/logs/stream` (the server's own log, admins).
 */
export default new Elysia({ name: 'logs-stream', tags: ['Live'] })
  .use(gantryContext)
  .use(auth)
  .get(
    '/tasks/:id/logs',
    async ({ gantry, user, params, query }) => {
      await visibleStream(gantry, user, params.id, 'task')
      const { logs, nextAfter } = await readTaskLogs(gantry, params.id, {
        after: query.after ?? 0,
        limit: query.limit ?? 100,
        levels: levelsFrom(query.level),
      })
      return { task_id: params.id, logs, next_after: nextAfter }
    },
    {
      auth: true,
      query: TaskLogsQuery,
      response: { 200: TaskLogsPage, 401: ErrorBody, 404: ErrorBody, 422: ErrorBody },
      detail: {
        summary: 'A task’s log',
        description:
          'The task’s LOG events, oldest first, `limit` per page (100, at most 1000); continue with `?after=<next_after>`. `level` keeps that level and above.',
      },
    },
  )
  .get(
    '/tasks/:id/logs/stream',
    async ({ gantry, user, params, query, request }) => {
      await visibleStream(gantry, user, params.id, 'task')
      const since = resumeSeq(request, query.since)
      const levels = new Set<string>(levelsFrom(query.level))
      return eventStream(gantry, request, params.id, since, (e) => {
        const log = taskLogOf(e)
        return log && levels.has(log.level) ? { id: e.seq, data: logLine(log) } : undefined
      })
    },
    {
      auth: true,
      query: StreamQuery,
      response: { 200: EventStreamBody, ...sseErrors },
      detail: {
        summary: 'Follow a task’s log (SSE)',
        description:
          'Server-Sent Events: `id: <seq>` and `data: [INFO] Task started` per LOG event; resumes after `Last-Event-ID` (or `?since=`); `: keep-alive` comments every 15 s; `event: end` once the task has finished, then the stream closes.',
      },
    },
  )
  .get(
    '/api/streams/:id/events',
    async ({ gantry, user, params, query, request }) => {
      await visibleStream(gantry, user, params.id)
      const since = resumeSeq(request, query.since)
      return eventStream(gantry, request, params.id, since, (e) => ({
        id: e.seq,
        data: JSON.stringify(envelopeOf(e)),
      }))
    },
    {
      auth: true,
      query: EventsQuery,
      response: { 200: EventStreamBody, ...sseErrors },
      detail: {
        summary: 'Events of a task or session (SSE)',
        description:
          'The WebSocket’s events for curl and proxies that dislike WebSockets: `id: <seq>` and `data: {type, task_id|session_id, seq, timestamp, data}`; resumes after `Last-Event-ID` (or `?since=`); `event: end` once the stream has finished.',
      },
    },
  )
  .get(
    '/api/logs/stream',
    ({ gantry, query, request }) => {
      const min = PINO_LEVELS[query.level ?? 'info']
      return sseResponse(gantry, request, (sink) =>
        gantry.logHub.subscribe((record) => {
          if (record.level >= min) sink.send({ data: JSON.stringify(record) })
        }),
      )
    },
    {
      auth: 'admin',
      query: ServerLogQuery,
      response: { 200: EventStreamBody, 401: ErrorBody, 403: ErrorBody, 422: ErrorBody },
      detail: {
        summary: 'Follow the server log (SSE, admins)',
        description:
          'Every log record of this instance from now on, as JSON in `data:`, at `level` (info) and above. Secrets are redacted as in the log itself.',
      },
    },
  )
