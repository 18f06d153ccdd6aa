import { and, asc, eq, inArray, lt } from 'drizzle-orm'
import type { Message } from 'ollama'
import type { Gantry } from '../../src/core/context.ts'
import {
  abortReasonOf,
  type ClaimedJob,
  type Fence,
  type JobContext,
  type JobOutcome,
  JobRunner,
  LeaseLostError,
} from '../../src/core/jobs.ts'
import { type Agent, BUILTIN_AGENTS, findAgent } from './agents.ts'
import { CHAT_JOB_KIND, type ChatJobPayload, releaseSession } from './chat.ts'
import { type ConverseEvent, converse, GenerationError, type Metrics } from './generation.ts'
import type { StoredToolCall, StoredToolResult } from './schema.ts'
import { chatMessages, chatSessions } from './schema.ts'

/** Generations one instance runs at once: they wait on Ollama, not on this CPU. */
export const CHAT_CONCURRENCY = 128

/**
 * Deltas go to the event log in small batches: the first token of a quiet stream is appended at once (no
 * added latency), and tokens that arrive while that append is being committed are merged into the next one.
 * Under load a batch grows to whatever arrived during one commit; consecutive deltas of one kind become one
 * event. Answer deltas are `content` events, reasoning deltas `reasoning` events. Every append carries the
 * job's fence; once one is refused (another instance took the answer over) nothing more is sent.
 *
 * Each delta is also shown at once, before any commit, to this instance's sockets that asked for it
 * (`events.preview`); the event it is merged into names those previews (`previewed`), so the commit reaches
 * those sockets as an ack, and an append that does not commit as a retraction. A delta that is never
 * appended (the batcher stopped) is retracted here. Deltas that a socket already has live need not hurry to
 * the log: while everything pending is such a delta, the batch gathers for LIVE_COMMIT_MS first (fewer,
 * larger events: less work for this process and for Postgres); any other event ends the wait.
 */
interface Pending {
  type: string
  data: Record<string, unknown>
  /** The tentative ids this event stands for (the previews of the deltas merged into it). */
  previewed: number[]
}

const MERGED = new Set(['content', 'reasoning'])
/** How long deltas already shown live may wait to be merged into one append. */
export const LIVE_COMMIT_MS = 50

class EventBatcher {
  private pending: Pending[] = []
  private flushing: Promise<void> | undefined
  private failure: unknown
  /** When the oldest pending event was pushed. */
  private firstAt = 0
  /** Ends the gathering wait early. */
  private wake: (() => void) | undefined = undefined

  constructor(
    private readonly gantry: Gantry,
    private readonly stream: string,
    private readonly fence: Fence,
  ) {}

  push(type: string, data: Record<string, unknown>): void {
    if (this.failure) return // a refused write is never retried
    const merged = MERGED.has(type)
    // Only deltas are shown before their commit; the previewed object is never changed afterwards.
    const id = merged ? this.gantry.events.preview(this.stream, type, data) : undefined
    const last = this.pending.at(-1)
    if (!last) this.firstAt = performance.now()
    if (id === undefined) this.wake?.()
    // A delta nobody took live never merges with one somebody did (nor the other way round): an event acked
    // as its previews must hold nothing else, or a socket that joined in between would miss that text.
    if (merged && last && last.type === type && (id === undefined) === (last.previewed.length === 0)) {
      last.data = { ...last.data, content: `${last.data.content}${data.content}` }
      if (id !== undefined) last.previewed.push(id)
    } else this.pending.push({ type, data, previewed: id === undefined ? [] : [id] })
    this.flushing ??= this.drain()
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length) {
        const wait = this.firstAt + LIVE_COMMIT_MS - performance.now()
        if (wait > 0 && this.pending.every((p) => p.previewed.length)) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, wait)
            this.wake = () => {
              clearTimeout(timer)
              resolve()
            }
          })
          this.wake = undefined
        }
        const batch = this.pending
        this.pending = []
        await this.gantry.events.appendMany(this.stream, batch, {
          fence: this.fence,
          previewed: batch.map((p) => p.previewed),
        })
      }
    } catch (err) {
      this.failure ??= err
      // The refused batch was retracted by the log; what gathered meanwhile will never be appended.
      this.gantry.events.retract(
        this.stream,
        this.pending.flatMap((p) => p.previewed),
      )
      this.pending = []
    } finally {
      this.flushing = undefined
    }
  }

  /** Waits until everything pushed is committed; rethrows an append failure. */
  async flush(): Promise<void> {
    this.wake?.()
    while (this.flushing) await this.flushing
    if (this.failure) throw this.failure
  }
}

/** What an earlier attempt of this answer left in the event log: the part clients already saw. */
interface Progress {
  /** The `response` or `error` event that ended the answer, when the instance died just after sending it. */
  end?: { type: string; data: Record<string, any> }
  content: string
  thinking: string
  toolCalls: StoredToolCall[]
  toolResults: StoredToolResult[]
}

async function progressSoFar(gantry: Gantry, stream: string, messageId: string, fromSeq: number) {
  const progress: Progress = { content: '', thinking: '', toolCalls: [], toolResults: [] }
  for (let after = fromSeq; ; ) {
    const events = await gantry.events.readSince(stream, after, 1000)
    if (!events.length) break
    for (const e of events) {
      const data = e.data as Record<string, any>
      if (data?.message_id !== messageId) continue
      if (e.type === 'response' || e.type === 'error') progress.end = { type: e.type, data }
      // Stored deltas carry the same fields as the live ones: fold them the same way.
      else record(progress, { ...data, type: e.type } as ConverseEvent)
    }
    after = events.at(-1)!.seq
  }
  return progress
}

/** The conversation before `beforeSeq` as Ollama messages: earlier answers count by their final text. */
async function history(gantry: Gantry, sessionId: string, beforeSeq: number, systemPrompt: string) {
  const rows = await gantry.db
    .select({ role: chatMessages.role, content: chatMessages.content, status: chatMessages.status })
    .from(chatMessages)
    .where(
      and(
        eq(chatMessages.sessionId, sessionId),
        lt(chatMessages.seq, beforeSeq),
        inArray(chatMessages.status, ['complete', 'incomplete']),
      ),
    )
    .orderBy(asc(chatMessages.seq))
  const messages: Message[] = systemPrompt ? [{ role: 'system', content: systemPrompt }] : []
  for (const r of rows) if (r.content) messages.push({ role: r.role, content: r.content })
  return messages
}

/**
 * Runs (or resumes) one chat answer as a job: streams it from Ollama through the event log and stores it.
 * On a takeover the new instance rebuilds what clients already saw from the event log and asks the model to
 * continue that partial answer (Ollama continues a trailing assistant message), so the text is never repeated.
 */
export async function runGeneration(
  gantry: Gantry,
  job: ClaimedJob<ChatJobPayload>,
  ctx: Pick<JobContext, 'signal' | 'fence' | 'fenced'>,
): Promise<JobOutcome | undefined> {
  const p = job.payload
  const messageId = p.assistant_message_id
  const [session] = await gantry.db.select().from(chatSessions).where(eq(chatSessions.id, p.session_id))
  const [message] = await gantry.db.select().from(chatMessages).where(eq(chatMessages.id, messageId))
  if (!session || !message) return { status: 'cancelled' } // deleted meanwhile
  if (message.status !== 'pending' && message.status !== 'streaming') {
    await ctx.fenced((tx) => releaseSession(tx, session.id, messageId))
    return { status: 'succeeded' }
  }
  const agent: Agent = (await findAgent(gantry, session.userId, p.agent)) ?? (BUILTIN_AGENTS[0] as Agent)
  const model = session.model ?? agent.model ?? gantry.config.ollamaModel
  const systemPrompt = session.systemPrompt ?? agent.systemPrompt
  const messages = await history(gantry, session.id, message.seq, systemPrompt)
  const stream = session.id
  const out = new EventBatcher(gantry, stream, ctx.fence)
  const emit = (type: string, data: Record<string, unknown> = {}) =>
    out.push(type, { message_id: messageId, ...data })

  const done: Progress =
    message.status === 'streaming'
      ? await progressSoFar(gantry, stream, messageId, message.streamSeq ?? 0)
      : { content: '', thinking: '', toolCalls: [], toolResults: [] }
  if (done.end) {
    // The answer ended and was sent; only its row was not written. Write it from the log.
    const { type, data } = done.end
    await storeAnswer(ctx, session.id, messageId, model, done, {
      status: type === 'response' && !data.incomplete ? 'complete' : done.content ? 'incomplete' : 'failed',
      failure: type === 'error' ? new GenerationError(data.code, data.message) : undefined,
      metrics: data.metrics,
    })
    return { status: 'succeeded' }
  }
  let stepsTaken = 0
  if (message.status === 'streaming') {
    // Replay the finished tool rounds, then let the model continue the partial answer.
    for (const step of [...new Set(done.toolCalls.map((c) => c.step))]) {
      const calls = done.toolCalls.filter((c) => c.step === step)
      messages.push({
        role: 'assistant',
        content: '',
        tool_calls: calls.map((c) => ({ function: { name: c.name, arguments: c.arguments } })),
      })
      for (const c of calls) {
        const result = done.toolResults.find((r) => r.tool_call_id === c.id)
        messages.push({ role: 'tool', content: result?.content ?? 'Error: no result', tool_name: c.name })
      }
      stepsTaken = step + 1
    }
    if (done.content) messages.push({ role: 'assistant', content: done.content })
    emit('notice', {
      code: 'resumed',
      message: 'The instance generating this answer stopped; another one continues it.',
    })
  } else {
    await ctx.fenced((tx) =>
      tx.update(chatMessages).set({ status: 'streaming', model }).where(eq(chatMessages.id, messageId)),
    )
  }

  const answer: Progress = { ...done, toolCalls: [...done.toolCalls], toolResults: [...done.toolResults] }
  let metrics: Metrics | undefined
  let failure: GenerationError | undefined
  try {
    for await (const event of converse(gantry, {
      model,
      messages,
      think: p.enable_reasoning,
      tools: agent.tools,
      options: { ...agent.options, ...session.options },
      user: p.user,
      sessionId: session.id,
      signal: ctx.signal,
      stepsTaken,
      // Refused (and the signal aborted) once another instance holds the answer.
      beforeTool: () => ctx.fenced(async () => {}),
    })) {
      record(answer, event)
      if (event.type === 'done') metrics = event.metrics
      else {
        const { type, ...data } = event
        emit(type, data)
      }
    }
  } catch (err) {
    failure =
      err instanceof GenerationError ? err : new GenerationError('internal_error', (err as Error).message)
    if (!(err instanceof GenerationError) && !(err instanceof LeaseLostError))
      gantry.log.error({ err, messageId, stream }, 'chat generation failed')
  }

  const reason = abortReasonOf(ctx.signal)
  if (reason === 'lease_lost') return { status: 'released' } // another instance owns the answer now
  if (reason === 'shutdown') {
    // What was streamed so far must be in the log: the instance that resumes continues from there.
    await out.flush().catch(() => {})
    return { status: 'released' }
  }
  const cancelled = reason === 'cancelled' || (ctx.signal.aborted && !failure)
  const complete = !cancelled && !failure && metrics !== undefined
  if (failure)
    emit('error', { code: failure.code, message: failure.message, partial: answer.content.length > 0 })
  else
    emit('response', {
      content: answer.content,
      metrics: metrics ?? null,
      ...(complete ? {} : { incomplete: true, reason: 'cancelled' }),
    })
  // The end is in the log before the row says so: whoever reads a finished message finds its events there.
  await out.flush().catch(() => {}) // deleted session: nowhere to write, nothing to keep
  // A refused append aborted the signal: the answer belongs to another attempt now, which stores it.
  if (abortReasonOf(ctx.signal) === 'lease_lost') return { status: 'released' }
  await storeAnswer(ctx, session.id, messageId, model, answer, {
    status: complete ? 'complete' : answer.content || cancelled ? 'incomplete' : 'failed',
    failure,
    metrics,
  })
  if (cancelled) return { status: 'cancelled' }
  return failure
    ? { status: 'failed', error: `${failure.code}: ${failure.message}` }
    : { status: 'succeeded' }
}

/**
 * Stores the finished answer and frees the session in one fenced transaction: the next chat sees this answer,
 * and an attempt that was taken over stores nothing.
 */
async function storeAnswer(
  ctx: Pick<JobContext, 'fenced'>,
  sessionId: string,
  messageId: string,
  model: string,
  answer: Progress,
  end: { status: 'complete' | 'incomplete' | 'failed'; failure?: GenerationError; metrics?: Metrics | null },
): Promise<void> {
  const { metrics, failure } = end
  await ctx.fenced(async (tx) => {
    await tx
      .update(chatMessages)
      .set({
        content: answer.content,
        thinking: answer.thinking || null,
        toolCalls: answer.toolCalls.length ? answer.toolCalls : null,
        toolResults: answer.toolResults.length ? answer.toolResults : null,
        model,
        status: end.status,
        incomplete: end.status !== 'complete',
        error: failure ? { code: failure.code, message: failure.message } : null,
        promptTokens: metrics?.prompt_tokens ?? null,
        completionTokens: metrics?.completion_tokens ?? null,
        timings: metrics
          ? {
              total_ms: metrics.total_ms,
              ...(metrics.first_token_ms !== null ? { first_token_ms: metrics.first_token_ms } : {}),
              ...(metrics.tokens_per_second !== null ? { tokens_per_second: metrics.tokens_per_second } : {}),
              tool_steps: metrics.tool_steps,
            }
          : null,
        completedAt: new Date(),
      })
      .where(eq(chatMessages.id, messageId))
    await tx
      .update(chatSessions)
      .set({ activeMessageId: null, lastActivityAt: new Date() })
      .where(and(eq(chatSessions.id, sessionId), eq(chatSessions.activeMessageId, messageId)))
  })
}

function record(answer: Progress, event: ConverseEvent): void {
  if (event.type === 'content') answer.content += event.content
  else if (event.type === 'reasoning') answer.thinking += event.content
  else if (event.type === 'tool_call')
    answer.toolCalls.push({ id: event.id, name: event.name, arguments: event.arguments, step: event.step })
  else if (event.type === 'tool_result')
    answer.toolResults.push({
      tool_call_id: event.tool_call_id,
      name: event.name,
      content: event.content,
      is_error: event.is_error,
    })
}

/** The chat job runner of one instance: a generation on an instance that died is taken over after JOB_LEASE_MS. */
export function createChatRunner(gantry: Gantry): JobRunner<ChatJobPayload> {
  const leaseMs = gantry.config.jobLeaseMs
  return new JobRunner<ChatJobPayload>(gantry.store, gantry.log, {
    kind: CHAT_JOB_KIND,
    concurrency: CHAT_CONCURRENCY,
    leaseMs,
    handler: (job, ctx) => runGeneration(gantry, job, ctx),
  })
}
