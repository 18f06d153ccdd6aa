import type { Gantry } from '../../src/core/context.ts'
import type { StoredEvent } from '../../src/core/events.ts'
import { parseSeq } from '../../src/core/input.ts'
import { LOG_LEVELS, type TaskLogLevel } from './model.ts'

/** The levels at or above `min`. */
export const levelsFrom = (min: TaskLogLevel = 'debug'): TaskLogLevel[] =>
  LOG_LEVELS.slice(LOG_LEVELS.indexOf(min))

export interface TaskLog {
  seq: number
  timestamp: string
  level: string
  message: string
}

/** A `LOG` event's `{level, message}`, or undefined for any other event (or a LOG without a message). */
export function taskLogOf(e: StoredEvent): TaskLog | undefined {
  if (e.type !== 'LOG' || !e.data || typeof e.data !== 'object') return undefined
  const { level, message } = e.data as { level?: unknown; message?: unknown }
  if (typeof message !== 'string') return undefined
  // Producers write INFO or info alike; the log routes speak lower case.
  return {
    seq: e.seq,
    timestamp: e.timestamp,
    level: typeof level === 'string' ? level.toLowerCase() : 'info',
    message,
  }
}

/** `data: [INFO] Task started` */
export const logLine = (log: TaskLog) => `[${log.level.toUpperCase()}] ${log.message}`

/** One page of a task's LOG events after `after`, at the given levels, straight from the event table. */
export async function readTaskLogs(
  gantry: Gantry,
  taskId: string,
  opts: { after: number; limit: number; levels: TaskLogLevel[] },
): Promise<{ logs: TaskLog[]; nextAfter: number | null }> {
  const rows = await gantry.store.query<{ seq: number; level: string | null; message: string; ms: number }>(
    `select seq, lower(data->>'level') as level, data->>'message' as message,
            round(extract(epoch from created_at) * 1000)::float8 as ms
       from events
      where stream = $1 and seq > $2 and type = 'LOG' and jsonb_typeof(data->'message') = 'string'
        and lower(coalesce(data->>'level', 'info')) = any($3::text[])
      order by seq limit $4`,
    [taskId, opts.after, opts.levels, opts.limit + 1],
  )
  const more = rows.length > opts.limit
  const logs = rows.slice(0, opts.limit).map((r) => ({
    seq: Number(r.seq),
    timestamp: new Date(Number(r.ms)).toISOString(),
    level: r.level ?? 'info',
    message: r.message,
  }))
  return { logs, nextAfter: more ? logs[logs.length - 1]!.seq : null }
}

/** Where to resume: `Last-Event-ID` (what EventSource sends back) wins over `?since=`; anything else is a 422. */
export function resumeSeq(request: Request, since: string | undefined): number {
  const header = request.headers.get('last-event-id')
  return header !== null ? parseSeq(header, 'header/last-event-id', 'Last-Event-ID') : parseSeq(since)
}
