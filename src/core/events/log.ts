/** The event log over Postgres or PGlite: appends, group commit, doorbells, and the channels it fans out to. */
import { type Database, isDatabaseUnavailable, type Store } from '../db.ts'
import type { Logger } from '../logger.ts'
import { recordEventsAppended } from '../metrics.ts'
import { Channel, type ChannelOwner, Subscriber } from './channel.ts'
import { commitBatch, type PendingAppend } from './commit.ts'
import {
  type AppendOptions,
  EVENTS_CHANNEL,
  type EventLogService,
  type StoredEvent,
  type StreamInfo,
  type StreamKind,
  type SubscribeOptions,
  type Subscription,
} from './types.ts'

/** Events per flush transaction. */
const MAX_BATCH_EVENTS = 2000
/**
 * How long a flush waits when every queued append is already on its subscribers' screens (each of its events
 * was taken as a tentative event): their commit only turns into acks, so streams that each flush every
 * LIVE_COMMIT_MS at their own moment share one transaction instead of one each. Any other append ends the wait.
 */
export const SHOWN_COMMIT_GATHER_MS = 20
const PAGE = 1000

interface Doorbell {
  from: string
  heads?: Record<string, number>
  all?: boolean
  finished?: string[]
  deleted?: string[]
}

/** The event log over Postgres or PGlite (see src/core/events.ts). */
export class PgEventLog implements EventLogService, ChannelOwner {
  readonly instance = crypto.randomUUID().slice(0, 8)
  closed = false
  private readonly channels = new Map<string, Channel>()
  /** `shown`: every event of the append was taken by a subscriber as a tentative event. */
  private queue: (PendingAppend & { shown: boolean })[] = []
  private queuedEvents = 0
  private flushing: Promise<void> | undefined
  private scheduled = false
  /** Queued appends with an event that no subscriber has seen yet: while there is one, nothing waits. */
  private unshown = 0
  private endGather: (() => void) | undefined = undefined
  /** @internal SHOWN_COMMIT_GATHER_MS, for tests that need the wait to be long. */
  shownGatherMs = SHOWN_COMMIT_GATHER_MS
  private unlisten: (() => Promise<void>) | undefined
  private lastTentative = 0

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
    this.endGather?.()
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
    return (await this.streamHead(stream))?.head ?? 0
  }

  /** @internal the head and whether the stream is finished, or undefined when there is no such stream */
  async streamHead(stream: string): Promise<{ head: number; finished: boolean } | undefined> {
    const [row] = await this.store.query<{ head: number; finished: boolean }>(
      'select head, finished_at is not null as finished from event_streams where id = $1',
      [stream],
    )
    return row ? { head: Number(row.head ?? 0), finished: Boolean(row.finished) } : undefined
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
    if (this.closed) {
      if (options.previewed) this.retract(stream, options.previewed.flat())
      return Promise.reject(new Error('The event log is closed (server shutting down).'))
    }
    if (!events.length) return Promise.resolve([])
    let rows: PendingAppend['rows']
    try {
      rows = events.map((e) => ({ type: e.type, data: JSON.stringify(e.data ?? null) }))
    } catch (err) {
      if (options.previewed) this.retract(stream, options.previewed.flat())
      return Promise.reject(new TypeError(`Event data must be JSON-serialisable: ${(err as Error).message}`))
    }
    let tentative = options.previewed
    if (!tentative && this.channels.get(stream)?.tentativeSubscribers) {
      tentative = events.map((e) => {
        const id = this.preview(stream, e.type, e.data ?? null)
        return id === undefined ? [] : [id]
      })
    }
    return new Promise((resolve, reject) => {
      const shown = tentative !== undefined && tentative.every((ids) => ids.length > 0)
      this.queue.push({ stream, fence: options.fence, rows, tentative, resolve, reject, shown })
      this.queuedEvents += rows.length
      if (!shown) {
        this.unshown++
        this.endGather?.()
      }
      this.schedule()
    })
  }

  preview(stream: string, type: string, data: unknown): number | undefined {
    const channel = this.channels.get(stream)
    if (!channel?.tentativeSubscribers || this.closed) return undefined
    const tentative = ++this.lastTentative
    const taken = channel.preview({ stream, tentative, type, data, timestamp: new Date().toISOString() })
    return taken ? tentative : undefined
  }

  retract(stream: string, tentative: number[]): void {
    if (tentative.length) this.channels.get(stream)?.retract(tentative)
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
    channel.add(sub)
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
        if (!this.unshown && !this.closed && this.queuedEvents < MAX_BATCH_EVENTS)
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, this.shownGatherMs)
            this.endGather = () => {
              clearTimeout(timer)
              resolve()
            }
          })
        this.endGather = undefined
        const batch: PendingAppend[] = []
        let size = 0
        while (this.queue.length && (size === 0 || size + this.queue[0]!.rows.length <= MAX_BATCH_EVENTS)) {
          const next = this.queue.shift()!
          size += next.rows.length
          if (!next.shown) this.unshown--
          batch.push(next)
        }
        this.queuedEvents -= size
        await this.flushBatch(batch)
      }
    } finally {
      this.flushing = undefined
    }
  }

  /** An append that will not commit: its tentative events are withdrawn before its caller hears of it. */
  private refuse(pending: PendingAppend, err: unknown): void {
    if (pending.tentative) this.retract(pending.stream, pending.tentative.flat())
    pending.reject(err)
  }

  private async flushBatch(batch: PendingAppend[]): Promise<void> {
    let outcome: Awaited<ReturnType<typeof commitBatch>>
    try {
      outcome = await commitBatch(this.store.query, this.instance, batch)
    } catch (err) {
      // One bad event (say, a string jsonb refuses) must not fail its neighbours: retry them one by one.
      if (batch.length > 1 && !isDatabaseUnavailable(err)) {
        for (const pending of batch) await this.flushBatch([pending])
        return
      }
      for (const pending of batch) this.refuse(pending, err)
      return
    }
    for (const [pending, err] of outcome.refused) this.refuse(pending, err)
    const byStream = new Map<string, { events: StoredEvent[]; tentative: Map<number, number[]> }>()
    for (const [pending, events] of outcome.committed) {
      pending.resolve(events)
      recordEventsAppended(events.length)
      let entry = byStream.get(pending.stream)
      if (!entry) {
        entry = { events: [], tentative: new Map() }
        byStream.set(pending.stream, entry)
      }
      entry.events.push(...events)
      if (pending.tentative)
        for (const [i, ids] of pending.tentative.entries())
          if (ids.length) entry.tentative.set(events[i]!.seq, ids)
    }
    for (const [stream, { events, tentative }] of byStream) {
      events.sort((a, b) => a.seq - b.seq)
      this.channels.get(stream)?.offer(events, tentative.size ? tentative : undefined)
    }
  }
}
