/**
 * Append-and-deliver throughput of the event log with several producers, every subscriber checked for every seq
 * exactly once, in order. Beside it, in the same run, the unbatched way (one transaction and one NOTIFY per
 * event, what most event tables do). Goal: ≥ 20,000 events/s with batching.
 * Run: bun bench/eventlog.bench.ts  (DATABASE_URL set: against Postgres; else PGlite)
 */
import { sql } from 'drizzle-orm'
import { startTestServer } from '../test/helpers.ts'

const PRODUCERS = 5
const IN_FLIGHT = 50
const SUBSCRIBERS = 10

const server = await startTestServer({ LOG_LEVEL: 'warn' })
const { events, db } = server.running.gantry
const owner = (await server.api('/api/me')).body.user_id

async function batched(total: number) {
  const stream = 'task-bench-batched'
  await events.createStream(stream, owner, 'task')
  const seen = Array.from({ length: SUBSCRIBERS }, () => 0)
  let errors = 0
  const subs = seen.map((_, i) =>
    events.subscribe(stream, 0, (e) => {
      if (e.seq !== seen[i]! + 1) errors++
      seen[i] = e.seq
    }),
  )
  const started = performance.now()
  await Promise.all(
    Array.from({ length: PRODUCERS }, async (_, p) => {
      const mine = total / PRODUCERS
      let next = 0
      await Promise.all(
        Array.from({ length: IN_FLIGHT }, async () => {
          while (next < mine) {
            next++
            await events.append(stream, 'LOG', { level: 'info', message: `producer ${p}` })
          }
        }),
      )
    }),
  )
  while (seen.some((s) => s < total)) await Bun.sleep(1)
  const ms = performance.now() - started
  for (const s of subs) s.close()
  return { events: total, ms, perSecond: (total / ms) * 1000, orderErrors: errors }
}

/** The same rows, one transaction and one NOTIFY per event. */
async function unbatched(total: number) {
  const stream = 'task-bench-unbatched'
  await events.createStream(stream, owner, 'task')
  const started = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: PRODUCERS * 2 }, async () => {
      while (next < total) {
        next++
        await db.transaction(async (tx) => {
          await tx.execute(sql`
            with bumped as (update event_streams set head = head + 1 where id = ${stream} returning head)
            insert into events (stream, seq, type, data) select ${stream}, head, 'LOG', '{"level":"info"}'::jsonb from bumped`)
          await tx.execute(sql`select pg_notify('bench_unbatched', ${stream})`)
        })
      }
    }),
  )
  const ms = performance.now() - started
  return { events: total, ms, perSecond: (total / ms) * 1000, orderErrors: 0 }
}

const base = await unbatched(3000)
const ours = await batched(40_000)
await server.stop()
const row = (r: typeof ours) => ({
  events: r.events,
  ms: Math.round(r.ms),
  'events/s': Math.round(r.perSecond),
  'order errors': r.orderErrors,
})
console.log(
  `event log on ${server.databaseUrl ? 'postgres' : 'pglite'}: ${PRODUCERS} producers × ${IN_FLIGHT} appends in flight, ${SUBSCRIBERS} subscribers`,
)
console.table({ 'one transaction per event': row(base), 'gantry (group commit)': row(ours) })
console.log(
  `ratio gantry/unbatched: ${(ours.perSecond / base.perSecond).toFixed(1)}×; goal ≥ 20,000 events/s: ${ours.perSecond >= 20_000 ? 'met' : 'NOT met'}`,
)
process.exit(0)
