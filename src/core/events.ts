/**
 * The durable event log: the spine every task and session event flows through.
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
 *
 * Delivered `StoredEvent` objects are shared by every subscriber of a stream: treat them as read-only.
 */
import { sql } from 'drizzle-orm'
import { type Database, isDatabaseUnavailable, type Store } from './db.ts'
import { NotFound } from './errors.ts'
import { type Fence, LeaseLostError } from './jobs.ts'
import type { Logger } from './logger.ts'
import { recordEventFanOut, recordEventsAppended } from './metrics.ts'

export const EVENTS_CHANNEL = 'gantry_events'
/** Postgres refuses NOTIFY payloads of 8000 bytes or more; past this a doorbell says "check everything". */
const DOORBELL_MAX_BYTES = 7000
/** Events per flush transaction. */
const MAX_BATCH_EVENTS = 2000
const PAGE = 1000
const RETRY_MS = 500
/** Events per open stream kept in memory (1–2× this) for quick replays: reconnects a few seconds behind. */
const RECENT_EVENTS = 2000
/** Full pages read for replays stay shared this long, up to this many (stored) bytes per stream. */
const PAGE_CACHE_MS = 10_000
const PAGE_CACHE_BYTES = 16 * 1024 * 1024

export interface StoredEvent {
  stream: string
  seq: number
  type: string
  data: unknown
  /** ISO 8601, set when the event was appended. */
  timestamp: string
}

export type StreamKind = 'task' | 'session'

export interface StreamInfo {
  ownerId: string
  kind: StreamKind
  finished: boolean
}

export interface SubscribeOptions {
  /**
   * Called when the stream ends: `finished` (at most once) after the last event has been delivered to this
   * subscriber (the subscription stays open until closed); `deleted` when the stream is gone (the subscription
   * is then closed), which may follow `finished`.
   */
  onEnd?: (reason: 'finished' | 'deleted') => void
}

export interface Subscription {
  close(): void
}

export interface AppendOptions {
  /** The appending job's attempt: the events commit only while it still holds the job (see jobs.ts). */
  fence?: Fence
}

export interface EventLog {
  /** Registers a stream and its owner (a user id) — tasks call it when a task is created, sessions when a session is. Idempotent. */
  createStream(stream: string, ownerId: string, kind: StreamKind): Promise<void>
  /** The owner and kind of a stream, or undefined if it does not exist. Used for auth before WS upgrades and SSE. */
  streamInfo(stream: string): Promise<StreamInfo | undefined>
  /**
   * Appends one event; batched with others in a short flush window; resolves after COMMIT with the assigned seq.
   * With a fence, rejects with `LeaseLostError` (committing nothing) when that job attempt was taken over.
   */
  append(stream: string, type: string, data?: unknown, options?: AppendOptions): Promise<StoredEvent>
  appendMany(
    stream: string,
    events: { type: string; data?: unknown }[],
    options?: AppendOptions,
  ): Promise<StoredEvent[]>
  /** Marks a stream finished (task done/failed/cancelled): SSE log streams then send `event: end` after the last event. */
  finishStream(stream: string): Promise<void>
  /** Events with seq > afterSeq, in order, at most `limit` (default 1000). */
  readSince(stream: string, afterSeq: number, limit?: number): Promise<StoredEvent[]>
  head(stream: string): Promise<number>
  /** Replay everything after `afterSeq`, then live, with no gap and no duplicate at the seam; `onEvent` is called in seq order. */
  subscribe(
    stream: string,
    afterSeq: number,
    onEvent: (e: StoredEvent) => void,
    options?: SubscribeOptions,
  ): Subscription
  /** Deletes a stream and all its events (task/session deleted). */
  deleteStream(stream: string): Promise<void>
}

/**
 * `{type, task_id | session_id, seq, timestamp, data}`: how clients see an event, on the WebSocket and in the SSE
 * mirror alike. The id key says the stream's kind.
 */
export function envelopeOf(e: StoredEvent): Record<string, unknown> {
  const key = e.stream.startsWith('sess-') ? 'session_id' : 'task_id'
  return { type: e.type, [key]: e.stream, seq: e.seq, timestamp: e.timestamp, data: e.data }
}

/** Stream ids carry their kind: `task-…` or `sess-…`. */
export const STREAM_ID = /^(task|sess)-[\w-]{1,128}$/

/** The log plus its lifecycle, which only the server calls. */
export interface EventLogService extends EventLog {
  /** LISTENs for other instances' doorbells. */
  start(): Promise<void>
  /** Commits what is queued, stops listening and drops every subscription. */
  close(): Promise<void>
  /** Subscribers and open streams on this instance (for /ready and benchmarks). */
  stats(): { streams: number; subscribers: number; queued: number }
}

interface Doorbell {
  from: string
  heads?: Record<string, number>
  all?: boolean
  finished?: string[]
  deleted?: string[]
}

interface PendingAppend {
  stream: string
  fence?: Fence
  rows: { type: string; data: string }[]
  resolve(events: StoredEvent[]): void
  reject(err: unknown): void
}

const rowsOf = <T>(result: unknown): T[] =>
  (Array.isArray(result) ? result : ((result as { rows?: T[] }).rows ?? [])) as T[]

/** A subscriber's cursor: it takes event `pos + 1` and nothing else, which is what makes the seam exact. */
class Subscriber implements Subscription {
  pos: number
  replaying = false
  closed = false
  ended = false
  private retry: ReturnType<typeof setTimeout> | undefined

  constructor(
    private readonly channel: Channel,
    afterSeq: number,
    private readonly onEvent: (e: StoredEvent) => void,
    private readonly options: SubscribeOptions,
  ) {
    this.pos = afterSeq
  }

  offer(e: StoredEvent): void {
    if (this.closed || this.replaying || e.seq <= this.pos) return
    if (e.seq === this.pos + 1) this.deliver(e)
    else void this.replay()
  }

  deliver(e: StoredEvent): void {
    this.pos = e.seq
    try {
      this.onEvent(e)
    } catch (err) {
      this.channel.log.error({ err, stream: e.stream, seq: e.seq }, 'an event subscriber threw')
    }
  }

  /** Reads from the table until it has caught up with what the channel delivers live. */
  async replay(): Promise<void> {
    if (this.replaying || this.closed) return
    this.replaying = true
    try {
      await this.channel.ensureReady()
      for (;;) {
        if (this.closed) return
        // The common reconnect is a few seconds behind: serve it from memory, synchronously, with no seam at all.
        if (this.channel.replayFromMemory(this)) break
        const page = await this.channel.read(this.pos)
        for (const e of page) {
          if (this.closed) return
          if (e.seq === this.pos + 1) this.deliver(e)
        }
        // Synchronous from the check to `replaying = false`: no live event can slip between them.
        if (page.length < PAGE && (this.channel.delivered ?? 0) <= this.pos) break
        if (page.length === 0) break
      }
      this.replaying = false
      if (this.channel.missing) this.end('deleted')
      else if (this.channel.finished) this.end('finished')
    } catch (err) {
      this.replaying = false
      if (this.closed) return
      this.channel.log.warn(
        { err: (err as Error).message, stream: this.channel.stream },
        'replay failed; retrying',
      )
      this.retry = setTimeout(() => void this.replay(), RETRY_MS)
    }
  }

  end(reason: 'finished' | 'deleted'): void {
    if (this.closed || (this.ended && reason === 'finished')) return
    this.ended = true
    if (reason === 'deleted') this.close()
    try {
      this.options.onEnd?.(reason)
    } catch (err) {
      this.channel.log.error({ err, stream: this.channel.stream }, 'an onEnd handler threw')
    }
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.retry)
    this.channel.remove(this)
  }
}

/** The subscribers of one stream on this instance, and the highest seq fanned out to them (in order, no gap). */
class Channel {
  readonly subscribers = new Set<Subscriber>()
  delivered: number | undefined
  /** The last events fanned out, contiguous: what a reconnecting subscriber most likely missed. */
  private recent: StoredEvent[] = []
  private readonly reads = new Map<number, Promise<StoredEvent[]>>()
  private readonly pages = new Map<number, { events: StoredEvent[]; bytes: number; until: number }>()
  private pageBytes = 0
  finished = false
  missing = false
  private ready: Promise<void> | undefined
  private pumping = false
  private again = false
  private retry: ReturnType<typeof setTimeout> | undefined

  constructor(
    readonly stream: string,
    private readonly owner: PgEventLog,
    readonly log: Logger,
  ) {}

  /**
   * A page from the table. Subscribers replaying from the same point (a crowd reconnecting) share one read, and
   * full pages — which never change — are kept for a few seconds so that a crowd arriving over time shares them.
   */
  read(afterSeq: number): Promise<StoredEvent[]> {
    const cached = this.pages.get(afterSeq)
    if (cached && cached.until > Date.now()) return Promise.resolve(cached.events)
    let page = this.reads.get(afterSeq)
    if (!page) {
      const reading = this.owner.readPage(this.stream, afterSeq, PAGE)
      page = reading.then((p) => p.events)
      this.reads.set(afterSeq, page)
      reading.then(
        ({ events, bytes }) => {
          this.reads.delete(afterSeq)
          if (events.length === PAGE) this.keepPage(afterSeq, events, bytes)
          this.remember(events)
        },
        () => this.reads.delete(afterSeq),
      )
    }
    return page
  }

  private keepPage(afterSeq: number, events: StoredEvent[], bytes: number): void {
    const now = Date.now()
    for (const [key, p] of this.pages)
      if (p.until <= now) {
        this.pages.delete(key)
        this.pageBytes -= p.bytes
      }
    if (this.pageBytes + bytes > PAGE_CACHE_BYTES) return
    this.pages.set(afterSeq, { events, bytes, until: now + PAGE_CACHE_MS })
    this.pageBytes += bytes
  }

  /** Learns the current head once, so live delivery starts where the table is now. */
  ensureReady(): Promise<void> {
    this.ready ??= (async () => {
      const [row] = await this.owner.store.query<{ head: number; finished: boolean }>(
        'select head, finished_at is not null as finished from event_streams where id = $1',
        [this.stream],
      )
      if (!row) this.missing = true
      this.delivered = Math.max(this.delivered ?? 0, Number(row?.head ?? 0))
      this.finished ||= Boolean(row?.finished)
    })().catch((err) => {
      this.ready = undefined
      throw err
    })
    return this.ready
  }

  private dispatch(e: StoredEvent): void {
    if (e.seq !== (this.delivered ?? 0) + 1) return
    this.delivered = e.seq
    this.recent.push(e)
    if (this.recent.length > RECENT_EVENTS * 2) this.recent = this.recent.slice(-RECENT_EVENTS)
    recordEventFanOut(e.timestamp, this.subscribers.size)
    for (const sub of this.subscribers) sub.offer(e)
  }

  /** A page read from the table that ends where the in-memory window starts joins it, so the next replay is free. */
  private remember(events: StoredEvent[]): void {
    const last = events[events.length - 1]
    if (!last || this.delivered === undefined || last.seq > this.delivered) return
    const first = this.recent[0]
    if (first ? last.seq < first.seq - 1 : last.seq !== this.delivered) return
    const older = first ? events.filter((e) => e.seq < first.seq) : events
    if (older.length + this.recent.length > RECENT_EVENTS * 2) return
    this.recent = older.concat(this.recent)
  }

  /**
   * Brings a replaying subscriber up to `delivered` from the events this channel fanned out lately, when they
   * reach back far enough. True when it is now caught up (and can go live).
   */
  replayFromMemory(sub: Subscriber): boolean {
    const delivered = this.delivered ?? 0
    if (sub.pos >= delivered) return true
    const first = this.recent[0]
    if (!first || first.seq > sub.pos + 1) return false
    for (let i = sub.pos + 1 - first.seq; i < this.recent.length && !sub.closed; i++)
      sub.deliver(this.recent[i]!)
    return true
  }

  /** Events this instance just committed: fan out at once when they follow on, else read the table. */
  offer(events: StoredEvent[]): void {
    const last = events[events.length - 1]
    if (!last) return
    if (this.delivered === undefined || this.pumping) {
      if (last.seq > (this.delivered ?? 0)) void this.pump()
      return
    }
    for (const e of events) {
      if (e.seq <= this.delivered) continue
      if (e.seq !== this.delivered + 1) return void this.pump()
      this.dispatch(e)
    }
  }

  /** Another instance committed up to `head`. */
  bell(head: number): void {
    if (this.delivered !== undefined && head <= this.delivered && !this.pumping) return
    void this.pump()
  }

  finish(): void {
    this.finished = true
    void this.pump()
  }

  drop(): void {
    this.missing = true
    for (const sub of [...this.subscribers]) sub.end('deleted')
  }

  /** Reads everything past `delivered` from the table and fans it out; one pump at a time per stream. */
  async pump(): Promise<void> {
    if (this.pumping) {
      this.again = true
      return
    }
    this.pumping = true
    clearTimeout(this.retry)
    try {
      await this.ensureReady()
      do {
        this.again = false
        for (;;) {
          if (!this.subscribers.size) return
          const page = await this.read(this.delivered ?? 0)
          for (const e of page) this.dispatch(e)
          if (page.length < PAGE) break
        }
      } while (this.again)
      if (this.finished) for (const sub of this.subscribers) if (!sub.replaying) sub.end('finished')
    } catch (err) {
      if (!this.subscribers.size || this.owner.closed) return
      this.log.warn({ err: (err as Error).message, stream: this.stream }, 'event delivery failed; retrying')
      this.retry = setTimeout(() => void this.pump(), RETRY_MS)
    } finally {
      this.pumping = false
    }
  }

  remove(sub: Subscriber): void {
    this.subscribers.delete(sub)
    if (!this.subscribers.size) {
      clearTimeout(this.retry)
      this.owner.forget(this)
    }
  }
}

/** The event log over Postgres or PGlite (see the file header). */
export class PgEventLog implements EventLogService {
  readonly instance = crypto.randomUUID().slice(0, 8)
  closed = false
  private readonly channels = new Map<string, Channel>()
  private queue: PendingAppend[] = []
  private queuedEvents = 0
  private flushing: Promise<void> | undefined
  private scheduled = false
  private unlisten: (() => Promise<void>) | undefined

  constructor(
    readonly store: Store,
    private readonly log: Logger,
  ) {}

  private get db(): Database {
    return this.store.db
  }

  async start(): Promise<void> {
    this.unlisten = await this.store.listen(
      EVENTS_CHANNEL,
      (payload) => this.ring(payload),
      // After a reconnect, NOTIFYs sent while we were away are lost: read every open stream up from the table.
      () => {
        for (const channel of this.channels.values()) void channel.pump()
      },
    )
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (let i = 0; i < 100 && (this.flushing || this.queue.length); i++) {
      if (!this.flushing) this.flushing = this.flushLoop()
      await this.flushing
    }
    await this.unlisten?.().catch(() => {})
    for (const channel of this.channels.values()) for (const sub of [...channel.subscribers]) sub.close()
    this.channels.clear()
  }

  stats() {
    let subscribers = 0
    for (const c of this.channels.values()) subscribers += c.subscribers.size
    return { streams: this.channels.size, subscribers, queued: this.queuedEvents }
  }

  async createStream(stream: string, ownerId: string, kind: StreamKind): Promise<void> {
    await this.store.query(
      'insert into event_streams (id, owner_id, kind) values ($1, $2, $3) on conflict (id) do nothing',
      [stream, ownerId, kind],
    )
  }

  async streamInfo(stream: string): Promise<StreamInfo | undefined> {
    const [row] = await this.store.query<{ owner_id: string; kind: StreamKind; finished: boolean }>(
      'select owner_id, kind, finished_at is not null as finished from event_streams where id = $1',
      [stream],
    )
    return row ? { ownerId: row.owner_id, kind: row.kind, finished: Boolean(row.finished) } : undefined
  }

  async head(stream: string): Promise<number> {
    const [row] = await this.store.query<{ head: number }>('select head from event_streams where id = $1', [
      stream,
    ])
    return Number(row?.head ?? 0)
  }

  async readSince(stream: string, afterSeq: number, limit = PAGE): Promise<StoredEvent[]> {
    return (await this.readPage(stream, afterSeq, limit)).events
  }

  /** @internal readSince, plus the stored size of the page (to bound what replays keep in memory). */
  async readPage(
    stream: string,
    afterSeq: number,
    limit: number,
  ): Promise<{ events: StoredEvent[]; bytes: number }> {
    const rows = await this.store.query<{
      seq: number
      type: string
      data: unknown
      ms: number
      size: number
    }>(
      `select seq, type, data, round(extract(epoch from created_at) * 1000)::float8 as ms,
              coalesce(pg_column_size(data), 0) + 64 as size
         from events where stream = $1 and seq > $2 order by seq limit $3`,
      [stream, Math.max(0, Math.floor(afterSeq)), Math.max(1, Math.floor(limit))],
    )
    let bytes = 0
    const events = rows.map((r) => {
      bytes += Number(r.size)
      return {
        stream,
        seq: Number(r.seq),
        type: r.type,
        data: r.data ?? null,
        timestamp: new Date(Number(r.ms)).toISOString(),
      }
    })
    return { events, bytes }
  }

  async append(stream: string, type: string, data?: unknown, options?: AppendOptions): Promise<StoredEvent> {
    const [event] = await this.appendMany(stream, [{ type, data }], options)
    return event!
  }

  appendMany(
    stream: string,
    events: { type: string; data?: unknown }[],
    options: AppendOptions = {},
  ): Promise<StoredEvent[]> {
    if (this.closed) return Promise.reject(new Error('The event log is closed (server shutting down).'))
    if (!events.length) return Promise.resolve([])
    let rows: PendingAppend['rows']
    try {
      rows = events.map((e) => ({ type: e.type, data: JSON.stringify(e.data ?? null) }))
    } catch (err) {
      return Promise.reject(new TypeError(`Event data must be JSON-serialisable: ${(err as Error).message}`))
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ stream, fence: options.fence, rows, resolve, reject })
      this.queuedEvents += rows.length
      this.schedule()
    })
  }

  async finishStream(stream: string): Promise<void> {
    await this.store.query(
      'update event_streams set finished_at = now() where id = $1 and finished_at is null',
      [stream],
    )
    this.channels.get(stream)?.finish()
    await this.ringOthers({ from: this.instance, finished: [stream] })
  }

  async deleteStream(stream: string): Promise<void> {
    await this.store.query('delete from event_streams where id = $1', [stream])
    this.channels.get(stream)?.drop()
    await this.ringOthers({ from: this.instance, deleted: [stream] })
  }

  subscribe(
    stream: string,
    afterSeq: number,
    onEvent: (e: StoredEvent) => void,
    options: SubscribeOptions = {},
  ): Subscription {
    let channel = this.channels.get(stream)
    if (!channel) {
      channel = new Channel(stream, this, this.log)
      this.channels.set(stream, channel)
    }
    const sub = new Subscriber(channel, Math.max(0, Math.floor(afterSeq) || 0), onEvent, options)
    if (this.closed) return sub
    channel.subscribers.add(sub)
    void sub.replay()
    return sub
  }

  /** @internal a channel whose last subscriber left */
  forget(channel: Channel): void {
    if (this.channels.get(channel.stream) === channel) this.channels.delete(channel.stream)
  }

  private async ringOthers(bell: Doorbell): Promise<void> {
    await this.store.notify(EVENTS_CHANNEL, JSON.stringify(bell)).catch((err) => {
      this.log.warn({ err: (err as Error).message }, 'could not ring the event doorbell')
    })
  }

  private ring(payload: string): void {
    let bell: Doorbell
    try {
      bell = JSON.parse(payload) as Doorbell
    } catch {
      return
    }
    if (bell.from === this.instance) return
    if (bell.all) for (const channel of this.channels.values()) void channel.pump()
    for (const [stream, head] of Object.entries(bell.heads ?? {})) this.channels.get(stream)?.bell(head)
    for (const stream of bell.finished ?? []) this.channels.get(stream)?.finish()
    for (const stream of bell.deleted ?? []) this.channels.get(stream)?.drop()
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return
    this.scheduled = true
    // The flush window: everything appended in this turn of the event loop shares one transaction.
    setImmediate(() => {
      this.scheduled = false
      if (!this.flushing) this.flushing = this.flushLoop()
    })
  }

  /** Group commit: while one flush is in flight the next batch gathers. */
  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length) {
        const batch: PendingAppend[] = []
        let size = 0
        while (this.queue.length && (size === 0 || size + this.queue[0]!.rows.length <= MAX_BATCH_EVENTS)) {
          const next = this.queue.shift()!
          size += next.rows.length
          batch.push(next)
        }
        this.queuedEvents -= size
        await this.flushBatch(batch)
      }
    } finally {
      this.flushing = undefined
    }
  }

  private async flushBatch(batch: PendingAppend[]): Promise<void> {
    let committed: Map<PendingAppend, StoredEvent[]>
    try {
      committed = await this.commit(batch)
    } catch (err) {
      // One bad event (say, a string jsonb refuses) must not fail its neighbours: retry them one by one.
      if (batch.length > 1 && !isDatabaseUnavailable(err)) {
        for (const pending of batch) await this.flushBatch([pending])
        return
      }
      for (const pending of batch) pending.reject(err)
      return
    }
    const byStream = new Map<string, StoredEvent[]>()
    for (const [pending, events] of committed) {
      pending.resolve(events)
      recordEventsAppended(events.length)
      const list = byStream.get(pending.stream)
      if (list) list.push(...events)
      else byStream.set(pending.stream, events.slice())
    }
    for (const [stream, events] of byStream) {
      events.sort((a, b) => a.seq - b.seq)
      this.channels.get(stream)?.offer(events)
    }
  }

  /**
   * One statement, so one round trip, run as its own transaction: take the fenced jobs' rows FOR SHARE and keep
   * only the events whose attempt still holds its job, lock the streams in id order (no deadlock between
   * instances), bump their heads, insert the events at the seqs that leaves free, and ring the doorbell.
   * Every admitted event of a stream gets head+1, head+2… in batch order, under the stream's row lock.
   */
  private async commit(batch: PendingAppend[]): Promise<Map<PendingAppend, StoredEvent[]>> {
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
    const [result] = rowsOf<{ held: string | null; heads: string | null }>(
      await this.db.execute(sql`
        with input as (
          select * from jsonb_to_recordset(${`[${input.join(',')}]`}::text::jsonb)
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
          select a.stream, b.base + a.ord, a.type, a.data, ${timestamp}::timestamptz
            from admitted a join bumped b on b.id = a.stream
          returning 1
        ), bell as (
          select json_build_object('from', ${this.instance}::text, 'heads', json_object_agg(id, head))::text as heads
            from bumped having count(*) > 0
        ), rang as (
          select pg_notify(${EVENTS_CHANNEL},
                   case when octet_length(bell.heads) > ${DOORBELL_MAX_BYTES}
                        then json_build_object('from', ${this.instance}::text, 'all', true)::text
                        else bell.heads end)
            from bell
        )
        select (select json_agg(json_build_array(h.id, h.lease_epoch, h.lease_owner, h.status)) from held h)::text
                 as held,
               (select json_object_agg(b.id, b.base) from bumped b)::text as heads,
               (select count(*) from inserted) as inserted,
               (select count(*) from rang) as rang`),
    )
    const bases = new Map(Object.entries(JSON.parse(result?.heads ?? 'null') ?? {}) as [string, number][])
    const holding = new Set(
      ((JSON.parse(result?.held ?? 'null') ?? []) as [string, number, string | null, string][])
        .filter(([, , , status]) => status === 'running')
        .map(([id, epoch, owner]) => `${id}\n${epoch}\n${owner}`),
    )
    const admitted = (f: Fence | undefined) => !f || holding.has(`${f.jobId}\n${f.epoch}\n${f.owner}`)
    const committed = new Map<PendingAppend, StoredEvent[]>()
    const next = new Map<string, number>()
    for (const pending of batch) {
      if (!admitted(pending.fence)) {
        pending.fence!.onFenced?.()
        pending.reject(new LeaseLostError(pending.fence!.jobId))
        continue
      }
      const base = bases.get(pending.stream)
      if (base === undefined) {
        pending.reject(NotFound(`Event stream ${pending.stream}`))
        continue
      }
      committed.set(
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
    return committed
  }
}

/** The event log of one app instance; the server starts it before plugins and closes it after them. */
export function createEventLog(store: Store, log: Logger): EventLogService {
  return new PgEventLog(store, log)
}
