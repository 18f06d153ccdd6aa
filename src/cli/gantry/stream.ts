/**
 * Follows a stream's events over SSE (`/api/streams/:id/events`) and keeps following across drops: after a
 * reset, a server restart or a silent connection it reconnects with `?since=<last seq handled>` and backoff.
 * The server replays exactly what came after that seq; the seq check here makes a doubled event impossible
 * even if a replay overlapped.
 */

import { authHeaders, httpError } from './client.ts'
import type { Connection } from './config.ts'
import { CliError } from './errors.ts'

/** The envelope of every task or session event. */
export interface StreamEvent {
  type: string
  seq: number
  timestamp: string
  task_id?: string
  session_id?: string
  data: Record<string, any>
}

export interface FollowHandlers {
  onEvent(event: StreamEvent): void | Promise<void>
  /** The server said the stream has ended (`event: end`, after the terminal event). */
  onEnd?(reason: string): void
  onConnected?(info: { since: number; reconnect: boolean }): void
  onRetry?(info: { attempt: number; delayMs: number; reason: string }): void
}

export interface FollowOptions {
  since?: number
  signal?: AbortSignal
  /** No byte (events or the 15 s keep-alives) for this long means the connection is dead. */
  idleMs?: number
  maxBackoffMs?: number
}

export type FollowOutcome =
  | { ended: true; reason: string; lastSeq: number }
  | { ended: false; lastSeq: number }

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504])

/** Parses SSE text into messages; keeps the unfinished tail for the next chunk. */
export class SseParser {
  private buffer = ''
  private data: string[] = []
  private event = ''
  private id: string | undefined

  push(chunk: string): { event: string; id?: string; data: string }[] {
    this.buffer += chunk
    const out: { event: string; id?: string; data: string }[] = []
    let newline = this.buffer.search(/\r\n|\r|\n/)
    while (newline >= 0) {
      const line = this.buffer.slice(0, newline)
      const width = this.buffer.startsWith('\r\n', newline) ? 2 : 1
      this.buffer = this.buffer.slice(newline + width)
      if (line === '') {
        if (this.data.length || this.event)
          out.push({ event: this.event || 'message', id: this.id, data: this.data.join('\n') })
        this.data = []
        this.event = ''
        this.id = undefined
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
        if (field === 'data') this.data.push(value)
        else if (field === 'event') this.event = value
        else if (field === 'id') this.id = value
      }
      newline = this.buffer.search(/\r\n|\r|\n/)
    }
    return out
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    function done() {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })

/**
 * Follows `/api/streams/:streamId/events` until the stream ends or `signal` aborts; handlers see every event
 * after `since` once, in seq order. Refusals (401, 403, 404, 422) end it with a CliError; everything else is
 * retried with backoff from 250 ms doubling to `maxBackoffMs`.
 */
export async function followStream(
  connection: Connection,
  streamId: string,
  handlers: FollowHandlers,
  options: FollowOptions = {},
): Promise<FollowOutcome> {
  const { signal, idleMs = 45_000, maxBackoffMs = 5000 } = options
  let lastSeq = options.since ?? 0
  let attempt = 0
  let connectedBefore = false
  while (!signal?.aborted) {
    const attemptAbort = new AbortController()
    const stopAttempt = () => attemptAbort.abort()
    signal?.addEventListener('abort', stopAttempt, { once: true })
    let idleTimer: ReturnType<typeof setTimeout> | undefined
    const touch = () => {
      clearTimeout(idleTimer)
      idleTimer = setTimeout(() => attemptAbort.abort(new Error(`no data for ${idleMs} ms`)), idleMs)
    }
    let reason = 'the stream closed'
    try {
      touch()
      const url = `${connection.url}/api/streams/${encodeURIComponent(streamId)}/events?since=${lastSeq}`
      const res = await fetch(url, {
        headers: { ...authHeaders(connection), accept: 'text/event-stream' },
        signal: attemptAbort.signal,
      })
      if (!res.ok) {
        const text = await res.text().catch(() => '')
        let body: unknown = text
        try {
          body = JSON.parse(text)
        } catch {
          // not JSON: keep the text
        }
        if (!RETRYABLE_STATUS.has(res.status))
          throw httpError(connection, res.status, body, { notFound: `no stream ${streamId}` })
        throw new Error(`HTTP ${res.status}`)
      }
      handlers.onConnected?.({ since: lastSeq, reconnect: connectedBefore })
      connectedBefore = true
      const parser = new SseParser()
      const decoder = new TextDecoder()
      const reader = res.body!.getReader()
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        touch()
        attempt = 0
        for (const message of parser.push(decoder.decode(value, { stream: true }))) {
          if (message.event === 'end') {
            await reader.cancel().catch(() => {})
            handlers.onEnd?.(message.data)
            return { ended: true, reason: message.data, lastSeq }
          }
          const seq = Number(message.id)
          if (!Number.isInteger(seq) || seq <= lastSeq) continue
          const event = JSON.parse(message.data) as StreamEvent
          lastSeq = seq
          await handlers.onEvent(event)
        }
      }
    } catch (err) {
      if (err instanceof CliError) throw err
      if (signal?.aborted) break
      const cause = attemptAbort.signal.reason ?? err
      reason = (cause as { code?: string })?.code ?? (cause as Error)?.message ?? String(cause)
    } finally {
      clearTimeout(idleTimer)
      signal?.removeEventListener('abort', stopAttempt)
      attemptAbort.abort()
    }
    if (signal?.aborted) break
    const delayMs = Math.round(Math.min(maxBackoffMs, 250 * 2 ** attempt) * (0.75 + Math.random() / 4))
    attempt++
    handlers.onRetry?.({ attempt, delayMs, reason })
    await sleep(delayMs, signal)
  }
  return { ended: false, lastSeq }
}
