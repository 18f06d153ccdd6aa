import { t } from 'elysia'

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const
export type TaskLogLevel = (typeof LOG_LEVELS)[number]

/** `level` keeps that level and the ones above it (warn → warn and error). */
export const TaskLogLevelQuery = t.Union(
  LOG_LEVELS.map((l) => t.Literal(l)),
  { description: 'Minimum level: debug < info < warn < error' },
)

export const TaskLogsQuery = t.Object(
  {
    level: t.Optional(TaskLogLevelQuery),
    after: t.Optional(t.Integer({ minimum: 0, maximum: 2 ** 31 - 1, description: 'Seq to continue after' })),
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 1000, description: 'At most this many (100)' })),
  },
  { additionalProperties: false },
)

export const TaskLogLine = t.Object({
  seq: t.Integer(),
  timestamp: t.String({ format: 'date-time' }),
  level: t.String(),
  message: t.String(),
})

export const TaskLogsPage = t.Object({
  task_id: t.String(),
  logs: t.Array(TaskLogLine),
  next_after: t.Nullable(t.Integer({ description: 'Pass as ?after= for the next page; null at the end' })),
})

export const StreamQuery = t.Object(
  {
    level: t.Optional(TaskLogLevelQuery),
    since: t.Optional(t.String({ description: 'Seq to resume after (as Last-Event-ID)' })),
  },
  { additionalProperties: false },
)

export const EventsQuery = t.Object(
  { since: t.Optional(t.String({ description: 'Seq to resume after (as Last-Event-ID)' })) },
  { additionalProperties: false },
)

export const SERVER_LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const

export const ServerLogQuery = t.Object(
  {
    level: t.Optional(
      t.Union(
        SERVER_LOG_LEVELS.map((l) => t.Literal(l)),
        { description: 'Minimum level (info)' },
      ),
    ),
  },
  { additionalProperties: false },
)

export const EventStreamBody = t.String({ description: 'text/event-stream' })
