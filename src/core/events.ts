/**
 * The durable event log: the spine every task and session event flows through (the code is in ./events/).
 *
 * - One stream per task (`task-…`) or session (`sess-…`), each event a row `{stream, seq, type, data, created_at}`
 *   with a gap-free seq from 1. Appenders bump `event_streams.head` under the stream's row lock inside the flush
 *   transaction, so seqs stay gap-free with concurrent appenders on several instances.
 * - Appends are group-committed: whatever arrives while a flush is in flight goes into the next one, and each
 *   flush is one transaction that rings ONE `NOTIFY gantry_events` (a doorbell naming streams and their head).
 * - Every instance LISTENs and fans out in-process. Delivery is driven by the table, not by the doorbell: a
 *   doorbell only says "read past what you delivered", so a lost NOTIFY (LISTEN connection dropped) costs
 *   latency, never an event — on reconnect every open stream is read up again.
 * - `subscribe(stream, afterSeq)` replays from the table, then goes live; each subscriber keeps a cursor, so
 *   at the seam nothing is missed and nothing is repeated.
 * - Appends a job makes carry its fence (`{ fence: ctx.fence }`, see src/core/jobs.ts). The flush statement
 *   takes those jobs' rows FOR SHARE and admits a fenced event only while its job still holds that epoch and
 *   owner; the events of a fenced attempt are left out of the batch as a whole (no seq is spent on them) and
 *   their appends reject with `LeaseLostError`, while every other append in the same flush commits as usual.
 * - Before the commit: a subscriber that opts in (`subscribe(…, { tentative })`) and is caught up gets the
 *   events appended on THIS instance at once, as tentative events without a seq. The commit then reaches it
 *   as an ack (`onAck(seq, ids)`) in the event's place in seq order, instead of the event again; an append
 *   that does not commit (fenced, refused, database down) as a retraction (`onRetract(ids)`). The table stays
 *   the only source of seqs: a subscriber's position only ever moves on a committed event or an ack.
 *
 * Delivered `StoredEvent` objects are shared by every subscriber of a stream: treat them as read-only.
 */
import type { Store } from './db.ts'
import { PgEventLog } from './events/log.ts'
import type { EventLogService } from './events/types.ts'
import type { Logger } from './logger.ts'

export { PgEventLog } from './events/log.ts'
export * from './events/types.ts'

/** The event log of one app instance; the server starts it before plugins and closes it after them. */
export function createEventLog(store: Store, log: Logger): EventLogService {
  return new PgEventLog(store, log)
}
