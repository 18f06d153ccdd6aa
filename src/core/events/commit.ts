/** One flush of the event log: a batch of appends committed by one statement, fenced by the appending jobs. */
import type { Store } from '../db.ts'
import { NotFound } from '../errors.ts'
import { type Fence, LeaseLostError } from '../jobs.ts'
import { EVENTS_CHANNEL, type StoredEvent } from './types.ts'

/** Postgres refuses NOTIFY payloads of 8000 bytes or more; past this a doorbell says "check everything". */
const DOORBELL_MAX_BYTES = 7000

export interface PendingAppend {
  stream: string
  fence?: Fence
  rows: { type: string; data: string }[]
  /** Per row, the tentative ids it stands for (shown to subscribers before this commit). */
  tentative?: number[][]
  resolve(events: StoredEvent[]): void
  reject(err: unknown): void
}

export interface FlushOutcome {
  committed: Map<PendingAppend, StoredEvent[]>
  /** Appends left out of the commit, with why: a lost lease or an unknown stream. */
  refused: [PendingAppend, Error][]
}

/**
 * One statement, so one round trip, run as its own transaction: take the fenced jobs' rows FOR SHARE and keep
 * only the events whose attempt still holds its job, lock the streams in id order (no deadlock between
 * instances), bump their heads, insert the events at the seqs that leaves free, and ring the doorbell.
 * Every admitted event of a stream gets head+1, head+2… in batch order, under the stream's row lock.
 * Constant text with $1 the batch as JSON, $2 the timestamp, $3 the instance, $4 the channel and $5 the
 * doorbell's limit: written once and prepared once per connection, not built by drizzle's sql template and
 * parsed by Postgres on every flush.
 */
const COMMIT_BATCH = `
  with input as (
    select * from jsonb_to_recordset($1::text::jsonb)
      as x(stream text, ord int, job text, epoch int, owner text, type text, data jsonb)
  ), held as (
    -- FOR SHARE returns the row as it is once locked: a claim committed meanwhile is seen, and a claim
    -- that comes later waits (or skips the row) until these events are committed.
    select j.id, j.lease_epoch, j.lease_owner, j.status from jobs j
     where j.id in (select job from input where job is not null)
     order by j.id
       for share of j
  ), admitted as (
    select i.stream, i.type, i.data, row_number() over (partition by i.stream order by i.ord)::int as ord
      from input i
     where i.job is null
        or exists (select 1 from held h
                    where h.id = i.job and h.lease_epoch = i.epoch and h.lease_owner = i.owner
                      and h.status = 'running')
  ), counts as (
    select stream, count(*)::int as n from admitted group by stream
  ), locked as (
    select s.id from event_streams s join counts c on c.stream = s.id order by s.id for update of s
  ), bumped as (
    update event_streams s set head = s.head + c.n
      from counts c, locked l
     where s.id = c.stream and l.id = s.id
    returning s.id, s.head - c.n as base, s.head as head
  ), inserted as (
    insert into events (stream, seq, type, data, created_at)
    select a.stream, b.base + a.ord, a.type, a.data, $2::text::timestamptz
      from admitted a join bumped b on b.id = a.stream
    returning 1
  ), bell as (
    select json_build_object('from', $3::text, 'heads', json_object_agg(id, head))::text as heads
      from bumped having count(*) > 0
  ), rang as (
    select pg_notify($4::text,
             case when octet_length(bell.heads) > $5::int
                  then json_build_object('from', $3::text, 'all', true)::text
                  else bell.heads end)
      from bell
  )
  select (select json_agg(json_build_array(h.id, h.lease_epoch, h.lease_owner, h.status)) from held h)::text
           as held,
         (select json_object_agg(b.id, b.base) from bumped b)::text as heads,
         (select count(*) from inserted) as inserted,
         (select count(*) from rang) as rang
`

/** Commits one batch: what was admitted, with its seqs, and what was refused and why. */
export async function commitBatch(
  query: Store['query'],
  instance: string,
  batch: PendingAppend[],
): Promise<FlushOutcome> {
  const timestamp = new Date().toISOString()
  const ords = new Map<string, number>()
  const input: string[] = []
  for (const pending of batch) {
    const f = pending.fence
    const fence = f
      ? `"job":${JSON.stringify(f.jobId)},"epoch":${Number(f.epoch)},"owner":${JSON.stringify(f.owner)}`
      : '"job":null'
    for (const row of pending.rows) {
      const ord = (ords.get(pending.stream) ?? 0) + 1
      ords.set(pending.stream, ord)
      input.push(
        `{"stream":${JSON.stringify(pending.stream)},"ord":${ord},${fence},"type":${JSON.stringify(row.type)},"data":${row.data}}`,
      )
    }
  }
  const [result] = await query<{ held: string | null; heads: string | null }>(
    COMMIT_BATCH,
    [`[${input.join(',')}]`, timestamp, instance, EVENTS_CHANNEL, DOORBELL_MAX_BYTES],
    { prepare: true },
  )
  const bases = new Map(Object.entries(JSON.parse(result?.heads ?? 'null') ?? {}) as [string, number][])
  const holding = new Set(
    ((JSON.parse(result?.held ?? 'null') ?? []) as [string, number, string | null, string][])
      .filter(([, , , status]) => status === 'running')
      .map(([id, epoch, owner]) => `${id}\n${epoch}\n${owner}`),
  )
  const admitted = (f: Fence | undefined) => !f || holding.has(`${f.jobId}\n${f.epoch}\n${f.owner}`)
  const outcome: FlushOutcome = { committed: new Map(), refused: [] }
  const next = new Map<string, number>()
  for (const pending of batch) {
    if (!admitted(pending.fence)) {
      pending.fence!.onFenced?.()
      outcome.refused.push([pending, new LeaseLostError(pending.fence!.jobId)])
      continue
    }
    const base = bases.get(pending.stream)
    if (base === undefined) {
      outcome.refused.push([pending, NotFound(`Event stream ${pending.stream}`)])
      continue
    }
    outcome.committed.set(
      pending,
      pending.rows.map((row) => {
        const ord = (next.get(pending.stream) ?? 0) + 1
        next.set(pending.stream, ord)
        return {
          stream: pending.stream,
          seq: Number(base) + ord,
          type: row.type,
          data: JSON.parse(row.data),
          timestamp,
        }
      }),
    )
  }
  return outcome
}
