/**
 * The in-process side of the log: the subscribers of one stream on this instance (`Channel`) and each
 * subscriber's cursor (`Subscriber`). Committed events fan out in seq order with no gap; tentative events (shown
 * before their commit, see TentativeHandlers) go only to subscribers that are caught up, and each one's commit
 * is then announced to them as an ack in its place in seq order, or withdrawn as a retraction.
 */
import type { Logger } from '../logger.ts'
import { recordEventFanOut } from '../metrics.ts'
import type { StoredEvent, SubscribeOptions, Subscription, TentativeEvent } from './types.ts'

export const PAGE = 1000
const RETRY_MS = 500
/** Events per open stream kept in memory (1–2× this) for quick replays: reconnects a few seconds behind. */
const RECENT_EVENTS = 2000
/** Full pages read for replays stay shared this long, up to this many (stored) bytes per stream. */
const PAGE_CACHE_MS = 10_000
const PAGE_CACHE_BYTES = 16 * 1024 * 1024

/** What a channel needs from the log that owns it. */
export interface ChannelOwner {
  readonly closed: boolean
  readPage(stream: string, afterSeq: number, limit: number): Promise<{ events: StoredEvent[]; bytes: number }>
  streamHead(stream: string): Promise<{ head: number; finished: boolean } | undefined>
  forget(channel: Channel): void
}

/** A subscriber's cursor: it takes event `pos + 1` and nothing else, which is what makes the seam exact. */
export class Subscriber implements Subscription {
  pos: number
  replaying = false
  closed = false
  ended = false
  /** Tentative ids this subscriber took that are neither acknowledged nor retracted yet. */
  private readonly taken = new Set<number>()
  private retry: ReturnType<typeof setTimeout> | undefined

  constructor(
    private readonly channel: Channel,
    afterSeq: number,
    private readonly onEvent: (e: StoredEvent) => void,
    readonly options: SubscribeOptions,
  ) {
    this.pos = afterSeq
  }

  offer(e: StoredEvent, tentative?: number[]): void {
    if (this.closed || this.replaying || e.seq <= this.pos) return
    if (e.seq === this.pos + 1) this.deliver(e, tentative)
    else void this.replay()
  }

  /** Event `pos + 1`: an ack when this subscriber already has all of it as tentative events, else in full. */
  deliver(e: StoredEvent, tentative?: number[]): void {
    this.pos = e.seq
    try {
      if (tentative && this.taken.size) {
        const had = tentative.filter((id) => this.taken.has(id))
        for (const id of had) this.taken.delete(id)
        if (had.length === tentative.length) {
          this.options.tentative!.onAck(e.seq, tentative)
          return
        }
        // It saw only part of what this event holds (it caught up in between): withdraw that part, send it whole.
        if (had.length) this.options.tentative!.onRetract(had)
      }
      this.onEvent(e)
    } catch (err) {
      this.channel.log.error({ err, stream: e.stream, seq: e.seq }, 'an event subscriber threw')
    }
  }

  /** Offers a tentative event; true if this subscriber took it. Only a caught-up subscriber is asked. */
  take(e: TentativeEvent): boolean {
    const handlers = this.options.tentative
    if (!handlers || this.closed || this.replaying || this.pos !== this.channel.delivered) return false
    try {
      if (!handlers.onEvent(e)) return false
    } catch (err) {
      this.channel.log.error({ err, stream: e.stream }, 'a tentative subscriber threw')
      return false
    }
    this.taken.add(e.tentative)
    return true
  }

  /** Withdraws whichever of these tentative events this subscriber took. */
  retract(tentative: Iterable<number>): void {
    if (!this.taken.size) return
    const had: number[] = []
    for (const id of tentative) if (this.taken.delete(id)) had.push(id)
    if (!had.length || this.closed) return
    try {
      this.options.tentative!.onRetract(had)
    } catch (err) {
      this.channel.log.error({ err, stream: this.channel.stream }, 'a tentative subscriber threw')
    }
  }

  /** Reads from the table until it has caught up with what the channel delivers live. */
  async replay(): Promise<void> {
    if (this.replaying || this.closed) return
    // A replay delivers whole events: whatever it holds as tentative would come twice, so withdraw it first.
    this.retract([...this.taken])
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
export class Channel {
  readonly subscribers = new Set<Subscriber>()
  /** How many of them take tentative events: appends skip the tentative path when none do. */
  tentativeSubscribers = 0
  delivered: number | undefined
  /** The last events fanned out, contiguous: what a reconnecting subscriber most likely missed. */
  private recent: StoredEvent[] = []
  /** seq → the tentative ids that event commits, until it is fanned out (it may come back from the table). */
  private readonly committedTentative = new Map<number, number[]>()
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
    private readonly owner: ChannelOwner,
    readonly log: Logger,
  ) {}

  add(sub: Subscriber): void {
    this.subscribers.add(sub)
    if (sub.options.tentative) this.tentativeSubscribers++
  }

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
      const row = await this.owner.streamHead(this.stream)
      if (!row) this.missing = true
      this.delivered = Math.max(this.delivered ?? 0, row?.head ?? 0)
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
    let tentative: number[] | undefined
    if (this.committedTentative.size) {
      tentative = this.committedTentative.get(e.seq)
      if (tentative) this.committedTentative.delete(e.seq)
    }
    for (const sub of this.subscribers) sub.offer(e, tentative)
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

  /** Shows a tentative event to the caught-up subscribers that take them; true if any did. */
  preview(e: TentativeEvent): boolean {
    let taken = false
    for (const sub of this.subscribers) if (sub.take(e)) taken = true
    return taken
  }

  /** Tentative events that will never commit. */
  retract(tentative: number[]): void {
    if (!this.tentativeSubscribers) return
    for (const sub of this.subscribers) sub.retract(tentative)
  }

  /**
   * Events this instance just committed (with the tentative ids each one stands for, if any): fan out at once
   * when they follow on, else read the table.
   */
  offer(events: StoredEvent[], tentative?: Map<number, number[]>): void {
    const last = events[events.length - 1]
    if (!last) return
    if (tentative)
      for (const [seq, ids] of tentative)
        if (seq > (this.delivered ?? 0) && this.tentativeSubscribers) this.committedTentative.set(seq, ids)
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
    if (this.subscribers.delete(sub) && sub.options.tentative) this.tentativeSubscribers--
    if (!this.subscribers.size) {
      clearTimeout(this.retry)
      this.owner.forget(this)
    }
  }
}
