/** The event log's public shapes: what producers append, what subscribers receive, how clients see it. */
import type { Fence } from '../jobs.ts'

export const EVENTS_CHANNEL = 'gantry_events'

export interface StoredEvent {
  stream: string
  seq: number
  type: string
  data: unknown
  /** ISO 8601, set when the event was appended. */
  timestamp: string
}

/**
 * An event this instance is about to commit, shown before its commit to the subscribers that asked for it. It
 * has no seq yet: `tentative` names it until the commit acknowledges it (with its seq) or retracts it.
 */
export interface TentativeEvent {
  stream: string
  /** Unique on this instance's log; tentative ids only ever mean something to the socket that got them. */
  tentative: number
  type: string
  data: unknown
  timestamp: string
}

export type StreamKind = 'task' | 'session'

export interface StreamInfo {
  ownerId: string
  kind: StreamKind
  finished: boolean
}

/**
 * A subscriber that takes events before their commit. It receives tentative events only while it is caught up
 * (no replay running, nothing committed it has not had); the commit of each one arrives, in seq order among
 * the full events, as `onAck`; events that will never commit (a refused or failed flush) as `onRetract`.
 */
export interface TentativeHandlers {
  /** A tentative event; return false to pass on it (its commit then arrives as an ordinary full event). */
  onEvent(e: TentativeEvent): boolean
  /** The tentative events `tentative` (all taken by this subscriber) are now committed as the event `seq`. */
  onAck(seq: number, tentative: number[]): void
  /** These tentative events will never commit as shown: drop them. */
  onRetract(tentative: number[]): void
}

export interface SubscribeOptions {
  /**
   * Called when the stream ends: `finished` (at most once) after the last event has been delivered to this
   * subscriber (the subscription stays open until closed); `deleted` when the stream is gone (the subscription
   * is then closed), which may follow `finished`.
   */
  onEnd?: (reason: 'finished' | 'deleted') => void
  /** Opt in to events appended on this instance before their commit (see TentativeHandlers). */
  tentative?: TentativeHandlers
}

export interface Subscription {
  close(): void
}

export interface AppendOptions {
  /** The appending job's attempt: the events commit only while it still holds the job (see jobs.ts). */
  fence?: Fence
  /**
   * The tentative ids (from `preview`) that each event stands for, one list per event: the caller showed them
   * itself and merged them (say, answer deltas that arrived during one commit). Without it, each event is
   * shown tentatively as it is appended.
   */
  previewed?: number[][]
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
  /**
   * Shows an event to this instance's caught-up tentative subscribers now, before any commit; returns its
   * tentative id, or undefined when nobody took it. The caller must then append it (`previewed`) or `retract` it.
   */
  preview(stream: string, type: string, data: unknown): number | undefined
  /** Tentative events shown by `preview` that will never be appended. */
  retract(stream: string, tentative: number[]): void
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

/** The log plus its lifecycle, which only the server calls. */
export interface EventLogService extends EventLog {
  /** LISTENs for other instances' doorbells. */
  start(): Promise<void>
  /** Commits what is queued, stops listening and drops every subscription. */
  close(): Promise<void>
  /** Subscribers and open streams on this instance (for /ready and benchmarks). */
  stats(): { streams: number; subscribers: number; queued: number }
}

/**
 * `{type, task_id | session_id, seq, timestamp, data}`: how clients see an event, on the WebSocket and in the SSE
 * mirror alike. The id key says the stream's kind.
 */
export function envelopeOf(e: StoredEvent): Record<string, unknown> {
  const key = e.stream.startsWith('sess-') ? 'session_id' : 'task_id'
  return { type: e.type, [key]: e.stream, seq: e.seq, timestamp: e.timestamp, data: e.data }
}

/** A tentative event as clients see it: the envelope with `tentative` in place of `seq`. */
export function tentativeEnvelopeOf(e: TentativeEvent): Record<string, unknown> {
  const key = e.stream.startsWith('sess-') ? 'session_id' : 'task_id'
  return { type: e.type, [key]: e.stream, tentative: e.tentative, timestamp: e.timestamp, data: e.data }
}

/** Stream ids carry their kind: `task-…` or `sess-…`. */
export const STREAM_ID = /^(task|sess)-[\w-]{1,128}$/
