// Turns one scripted Reply into the bytes Ollama would send for /api/chat or
// /api/generate: paced NDJSON chunks (thinking, then content, then tool calls,
// then a final chunk with metrics), or a single JSON object when not streaming,
// plus the failure modes (error line, reset socket, hang) tests need.
import type { GenerationPath, Reply } from './ollama.ts'
import { authorContent } from './ollama-author.ts'
import { type MockModel, ollamaErrors } from './ollama-models.ts'
import { jsonForFormat } from './ollama-schema.ts'

type Body = Record<string, any>
type ToolCall = { function: { index: number; name: string; arguments: Record<string, unknown> } }
type Delta = { content?: string; thinking?: string; tool_calls?: ToolCall[] }

export interface Plan {
  thinking: string[]
  content: string[]
  toolCalls: ToolCall[]
  doneReason: string
  failAfter?: number
  failMessage: string
  breakConnection: boolean
  hang: boolean
  intervalMs: number
  delayMs: number
  promptTokens: number
}

/** Bun.nanoseconds() marks from which the final chunk's durations are measured. */
export interface Timeline {
  received: number
  loaded: number
  firstToken: number
}

const DEFAULT_FAIL_MESSAGE = 'an error was encountered while running the model: simulated failure'
const encoder = new TextEncoder()
/** How long queued chunks get to reach the socket before a simulated connection reset. */
const FLUSH_MS = 20

/** The stream tokenization: word-ish pieces carrying their leading whitespace; joining them gives the text back. */
export function tokensOf(text: string): string[] {
  return text.match(/\s*\S+|\s+/g) ?? []
}

export function planGeneration(
  path: GenerationPath,
  body: Body,
  model: MockModel,
  reply: Reply,
  defaultPace?: number,
): Plan {
  const subject = requestSubject(path, body).slice(0, 60)
  // Scripted output suppresses the default text and the default reasoning alike.
  const scripted = reply.content !== undefined || (reply.tool_calls?.length ?? 0) > 0
  // Ollama >= 0.12.6 turns thinking on by default for thinking-capable models.
  const thinkingOn = model.capabilities.includes('thinking') && body.think !== false
  const content = reply.content ?? (scripted ? '' : defaultContent(body, subject))
  const thinking = thinkingOn
    ? (reply.thinking ?? (scripted ? '' : `Simulated reasoning about: ${subject}`))
    : ''
  const pace = reply.tokensPerSecond ?? defaultPace ?? 0
  const plan: Plan = {
    thinking: tokensOf(thinking),
    content: tokensOf(content),
    toolCalls: (reply.tool_calls ?? []).map((call, index) => ({
      function: { index, name: call.name, arguments: call.arguments },
    })),
    doneReason: reply.done_reason ?? 'stop',
    failAfter: reply.failAfterTokens ?? (reply.breakConnection ? 1 : undefined),
    failMessage: reply.failMessage ?? DEFAULT_FAIL_MESSAGE,
    breakConnection: reply.breakConnection ?? false,
    hang: reply.hang ?? false,
    intervalMs: pace > 0 ? 1000 / pace : 0,
    delayMs: reply.delayMs ?? 0,
    promptTokens: Math.max(1, tokensOf(promptText(path, body)).length),
  }
  truncateToBudget(plan, body.options?.num_predict, reply.done_reason)
  if (!isValidFormat(body.format)) {
    // Ollama rejects a bad format only once the runner starts: a stream error line (500 unstreamed), not a 400.
    Object.assign(plan, {
      failAfter: 0,
      breakConnection: false,
      failMessage: ollamaErrors.invalidFormat(body.format),
    })
  }
  return plan
}

/** options.num_predict caps generated tokens; Ollama then reports done_reason "length". */
function truncateToBudget(plan: Plan, budget: unknown, scriptedReason?: string): void {
  if (typeof budget !== 'number' || budget <= 0 || plan.thinking.length + plan.content.length <= budget)
    return
  plan.thinking = plan.thinking.slice(0, budget)
  plan.content = plan.content.slice(0, budget - plan.thinking.length)
  plan.toolCalls = []
  plan.doneReason = scriptedReason ?? 'length'
}

/**
 * The HTTP response for a planned generation. `generation` is aborted when the
 * client leaves or the server stops; `finish` runs once nothing more will be written.
 */
export async function produceResponse(
  path: GenerationPath,
  body: Body,
  plan: Plan,
  timeline: Timeline,
  generation: AbortController,
  finish: () => void,
): Promise<Response> {
  const { signal } = generation
  await sleep(plan.delayMs, signal)
  timeline.firstToken = Bun.nanoseconds()
  const emit = new ChunkFactory(path, String(body.model), plan, timeline)
  if (body.stream === false) return respondOnce(emit, plan, signal).finally(finish)

  const stream = new ReadableStream<Uint8Array>({
    start: (controller) => void pumpStream(new NdjsonSink(controller), emit, plan, signal).finally(finish),
    cancel: () => generation.abort(),
  })
  return new Response(stream, { headers: { 'Content-Type': 'application/x-ndjson' } })
}

/** The reply to a chat/generate call with no messages/prompt: Ollama just loads or unloads the model. */
export function lifecycleChunk(path: GenerationPath, model: string, doneReason: 'load' | 'unload') {
  const output = path === '/api/chat' ? { message: { role: 'assistant', content: '' } } : { response: '' }
  return { model, created_at: new Date().toISOString(), ...output, done: true, done_reason: doneReason }
}

/** Builds the NDJSON objects for one response, in Ollama's field layout for the endpoint. */
class ChunkFactory {
  constructor(
    private readonly path: GenerationPath,
    private readonly model: string,
    private readonly plan: Plan,
    private readonly timeline: Timeline,
  ) {}

  delta(delta: Delta, done = false): Record<string, unknown> {
    const created_at = new Date().toISOString()
    const extras = {
      ...(delta.thinking ? { thinking: delta.thinking } : {}),
      ...(delta.tool_calls?.length ? { tool_calls: delta.tool_calls } : {}),
    }
    if (this.path === '/api/generate') {
      return { model: this.model, created_at, response: delta.content ?? '', ...extras, done }
    }
    const message = { role: 'assistant', content: delta.content ?? '', ...extras }
    return { model: this.model, created_at, message, done }
  }

  final(delta: Delta, evalCount: number): Record<string, unknown> {
    const now = Bun.nanoseconds()
    // Durations are real elapsed nanoseconds, never 0, so tokens/s maths on them is safe.
    const ns = (from: number, to: number) => Math.max(1, Math.round(to - from))
    const { received, loaded, firstToken } = this.timeline
    const contextLength = this.plan.promptTokens + evalCount
    return {
      ...this.delta(delta, true),
      done_reason: this.plan.doneReason,
      ...(this.path === '/api/generate'
        ? { context: Array.from({ length: contextLength }, (_, i) => i + 1) }
        : {}),
      total_duration: ns(received, now),
      load_duration: ns(received, loaded),
      prompt_eval_count: this.plan.promptTokens,
      prompt_eval_duration: ns(loaded, firstToken),
      eval_count: Math.max(1, evalCount),
      eval_duration: ns(firstToken, now),
    }
  }
}

/** Writes NDJSON lines; writes after the client went away are dropped. */
class NdjsonSink {
  wrote = false
  constructor(private readonly controller: ReadableStreamDefaultController<Uint8Array>) {}

  write(line: Record<string, unknown>): void {
    try {
      this.controller.enqueue(encoder.encode(`${JSON.stringify(line)}\n`))
      this.wrote = true
    } catch {}
  }

  close(): void {
    try {
      this.controller.close()
    } catch {}
  }

  /** Bun resets the socket when a response body errors: the client sees ECONNRESET, not a clean end. */
  destroy(): void {
    try {
      this.controller.error()
    } catch {}
  }
}

async function pumpStream(
  sink: NdjsonSink,
  emit: ChunkFactory,
  plan: Plan,
  signal: AbortSignal,
): Promise<void> {
  const tokens: Delta[] = [
    ...plan.thinking.map((thinking) => ({ thinking })),
    ...plan.content.map((content) => ({ content })),
  ]
  for (const [sent, token] of tokens.entries()) {
    if (sent === plan.failAfter) return failStream(sink, plan)
    await sleep(plan.intervalMs, signal)
    if (signal.aborted) return sink.destroy()
    sink.write(emit.delta(token))
  }
  if (signal.aborted) return sink.destroy()
  if (plan.failAfter !== undefined) return failStream(sink, plan)
  if (plan.hang) {
    // Bun flushes response headers only with the first body bytes; without them
    // the client never gets a stream it could abort.
    if (!sink.wrote) sink.write(emit.delta({ content: '' }))
    await untilAborted(signal)
    return sink.destroy()
  }
  // Ollama sends parsed tool calls in a chunk of their own, then an empty final chunk with the metrics.
  if (plan.toolCalls.length > 0) sink.write(emit.delta({ tool_calls: plan.toolCalls }))
  sink.write(emit.final({}, tokens.length + plan.toolCalls.length))
  sink.close()
}

async function failStream(sink: NdjsonSink, plan: Plan): Promise<void> {
  if (plan.breakConnection) {
    // Unpaced tokens are only queued so far; give Bun a turn to put them on the
    // wire, or the reset would swallow them (and the headers) and break nothing "mid-stream".
    if (sink.wrote) await new Promise((resolve) => setTimeout(resolve, FLUSH_MS))
    sink.destroy()
    return
  }
  // Ollama reports runner failures inside the 200 stream as a bare {"error": ...} line.
  sink.write({ error: plan.failMessage })
  sink.close()
}

async function respondOnce(emit: ChunkFactory, plan: Plan, signal: AbortSignal): Promise<Response> {
  const tokenCount = plan.thinking.length + plan.content.length
  await sleep(plan.intervalMs * Math.min(tokenCount, plan.failAfter ?? tokenCount), signal)
  if (signal.aborted || plan.breakConnection) return brokenResponse()
  // Unstreamed, Ollama turns a runner failure into a 500 with the same message.
  if (plan.failAfter !== undefined) return errorJson(500, plan.failMessage)
  if (plan.hang) {
    await untilAborted(signal)
    return brokenResponse()
  }
  const whole = {
    thinking: plan.thinking.join(''),
    content: plan.content.join(''),
    tool_calls: plan.toolCalls,
  }
  return Response.json(emit.final(whole, tokenCount + plan.toolCalls.length))
}

function brokenResponse(): Response {
  return new Response(new ReadableStream({ start: (controller) => controller.error() }))
}

function defaultContent(body: Body, subject: string): string {
  const authored = authorContent(body)
  if (authored !== undefined) return authored
  const answer = `Simulated answer to: ${subject}`
  return body.format === 'json' || isRecord(body.format) ? jsonForFormat(body.format, answer) : answer
}

function requestSubject(path: GenerationPath, body: Body): string {
  if (path === '/api/generate') return String(body.prompt ?? '')
  const users = (Array.isArray(body.messages) ? body.messages : []).filter((m: any) => m?.role === 'user')
  return String(users.at(-1)?.content ?? '')
}

function promptText(path: GenerationPath, body: Body): string {
  if (path === '/api/generate') return `${body.system ?? ''} ${body.prompt ?? ''}`
  const messages: any[] = Array.isArray(body.messages) ? body.messages : []
  return messages.map((m) => String(m?.content ?? '')).join(' ')
}

function isValidFormat(format: unknown): boolean {
  return format === undefined || format === null || format === '' || format === 'json' || isRecord(format)
}

export function isRecord(value: unknown): value is Record<string, any> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function errorJson(status: number, message: string): Response {
  return Response.json({ error: message }, { status })
}

/** Abortable timer: resolves early (never rejects) on abort, so callers just re-check the signal. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve()
  return new Promise((resolve) => {
    const wake = () => {
      clearTimeout(timer)
      signal.removeEventListener('abort', wake)
      resolve()
    }
    const timer = setTimeout(wake, ms)
    signal.addEventListener('abort', wake, { once: true })
  })
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve()
    else signal.addEventListener('abort', () => resolve(), { once: true })
  })
}
