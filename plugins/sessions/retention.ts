import { and, isNull, lt } from 'drizzle-orm'
import type { Gantry } from '../../src/core/context.ts'
import { startHourlySweep } from '../../src/core/sweep.ts'
import { chatSessions } from './schema.ts'

/**
 * Deletes idle sessions (SESSION_TTL_DAYS) shortly after start and then hourly. Every instance may run it:
 * the delete is one statement, so two instances at once just find less to do. Returns the stopper.
 */
export function startRetention(gantry: Gantry): () => void {
  if (gantry.config.sessionTtlDays <= 0) return () => {}
  return startHourlySweep(gantry, 'session', () => purgeIdleSessions(gantry))
}

/**
 * Retention: deletes sessions idle longer than SESSION_TTL_DAYS (0 keeps all) with their messages and events.
 * A session that is generating right now is never idle.
 */
export async function purgeIdleSessions(gantry: Gantry, now = new Date()): Promise<number> {
  const days = gantry.config.sessionTtlDays
  if (days <= 0) return 0
  const cutoff = new Date(now.getTime() - days * 86_400_000)
  const rows = await gantry.db
    .delete(chatSessions)
    .where(and(lt(chatSessions.lastActivityAt, cutoff), isNull(chatSessions.activeMessageId)))
    .returning({ id: chatSessions.id })
  for (const { id } of rows) await gantry.events.deleteStream(id).catch(() => {})
  if (rows.length) gantry.log.info({ sessions: rows.length, ttlDays: days }, 'idle sessions deleted')
  return rows.length
}
