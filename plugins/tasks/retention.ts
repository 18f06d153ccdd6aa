import { and, inArray, sql } from 'drizzle-orm'
import type { Gantry } from '../../src/core/context.ts'
import { jobs } from '../../src/core/schema.ts'
import { startHourlySweep } from '../../src/core/sweep.ts'
import { FINISHED, tasks } from './schema.ts'

/** Tasks deleted per transaction: a first sweep over years of history must not hold one huge transaction. */
const BATCH = 200

/**
 * Deletes old finished tasks (TASK_TTL_DAYS) shortly after start and then hourly, as sessions are. Every
 * instance may run it: each batch is one statement on rows no job touches any more, so two instances at once
 * just find less to do. Returns the stopper.
 */
export function startTaskRetention(gantry: Gantry): () => void {
  if (gantry.config.taskTtlDays <= 0) return () => {}
  return startHourlySweep(gantry, 'task', () => purgeOldTasks(gantry))
}

/**
 * Retention: deletes tasks that finished (completed, failed or cancelled) more than TASK_TTL_DAYS ago (0 keeps
 * all), with their modules (cascade), their job row and their event stream — which is also their log.
 * Queued and running tasks are never touched, however old.
 */
export async function purgeOldTasks(gantry: Gantry, now = new Date()): Promise<number> {
  const days = gantry.config.taskTtlDays
  if (days <= 0) return 0
  const cutoff = new Date(now.getTime() - days * 86_400_000)
  let deleted = 0
  for (;;) {
    const ids = await gantry.db.transaction(async (tx) => {
      const old = tx
        .select({ id: tasks.id })
        .from(tasks)
        .where(
          and(
            inArray(tasks.status, [...FINISHED]),
            // A task cancelled while still queued may have no finish time: its creation time counts then.
            sql`coalesce(${tasks.finishedAt}, ${tasks.createdAt}) < ${cutoff.toISOString()}::timestamptz`,
          ),
        )
        .limit(BATCH)
      const gone = await tx.delete(tasks).where(inArray(tasks.id, old)).returning({ id: tasks.id })
      const list = gone.map((row) => row.id)
      if (list.length) await tx.delete(jobs).where(inArray(jobs.id, list))
      return list
    })
    for (const id of ids) await gantry.events.deleteStream(id).catch(() => {})
    deleted += ids.length
    if (ids.length < BATCH) break
  }
  if (deleted) gantry.log.info({ tasks: deleted, ttlDays: days }, 'old finished tasks deleted')
  return deleted
}
