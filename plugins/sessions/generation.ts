import type { ChatResponse, Message, Tool as OllamaTool } from 'ollama'
import type { Gantry } from '../../src/core/context.ts'
import type { Principal } from '../../src/core/keys.ts'
import { observeChatAnswer } from '../../src/core/metrics.ts'
import { promptBudget, trimHistory } from './history.ts'
import { asGenerationError, GenerationError, modelInfo, ollamaClient } from './ollama.ts'

/** Tool steps per answer: after this many rounds of calls the model must answer without tools. */
export const MAX_TOOL_STEPS = 5
/** The window used when the request sets no num_ctx (capped by the model's own). */
export const DEFAULT_NUM_CTX = 8192
const TOOL_RESULT_MAX_CHARS = 20_000

export interface Metrics {
  model: string
  prompt_tokens: number
  completion_tokens: number
  total_ms: number
  first_token_ms: number | null
  tokens_per_second: number | null
  tool_steps: number
  trimmed_messages: number
}

/** What one answer produces, in order: the protocol's events before they are framed for a transport. */
export type ConverseEvent =
  | { type: 'reasoning'; content: string }
  | { type: 'reasoning_complete'; content: string }
  | { type: 'content'; content: string }
  | { type: 'tool_call'; id: string; name: string; arguments: Record<string, unknown>; step: number }
  | { type: 'tool_result'; tool_call_id: string; name: string; content: string; is_error: boolean }
  | { type: 'notice'; code: string; message: string }
  | { type: 'done'; metrics: Metrics; done_reason: string }

export interface ConverseInput {
  model: string
  /** System prompt first, then the conversation; a trailing partial assistant message is continued. */
  messages: Message[]
  think: boolean
  tools: string[]
  options: Record<string, unknown>
  user: Principal
  sessionId?: string
  signal: AbortSignal
  /** Tool steps already taken by an earlier attempt of the same answer (resume after a takeover). */
  stepsTaken?: number
  /**
   * Called before each tool runs; throws to stop the answer. The chat job checks its lease there: a tool's
   * effect (a task started, a click on the desktop) is a write the event log's fence cannot take back.
   */
  beforeTool?: () => Promise<void>
}

const toOllamaTool = (tool: { name: string; description: string; parameters: unknown }): OllamaTool => ({
  type: 'function',
  function: { name: tool.name, description: tool.description, parameters: tool.parameters as any },
})

/**
 * One answer from Ollama, streamed: reasoning deltas, answer deltas, and the tool loop (each call run through
 * `gantry.tools`, its result fed back, at most MAX_TOOL_STEPS rounds). Unknown tools and tool errors go back
 * to the model as tool results. Throws a GenerationError for model/Ollama failures; stops on `signal`.
 */
export async function* converse(gantry: Gantry, input: ConverseInput): AsyncGenerator<ConverseEvent> {
  const started = performance.now()
  const info = await modelInfo(gantry, input.model)
  let think = input.think
  if (think && !info.capabilities.includes('thinking')) {
    think = false
    yield {
      type: 'notice',
      code: 'reasoning_unsupported',
      message: `Model "${input.model}" cannot show its reasoning; answering without it.`,
    }
  }
  let toolNames = input.tools.filter((name) => gantry.tools.get(name))
  if (toolNames.length && !info.capabilities.includes('tools')) {
    toolNames = []
    yield {
      type: 'notice',
      code: 'tools_unsupported',
      message: `Model "${input.model}" cannot call tools; answering without them.`,
    }
  }
  const requestedCtx = Number(input.options.num_ctx) || DEFAULT_NUM_CTX
  const window = Math.min(info.contextLength, requestedCtx)
  const options = { ...input.options, num_ctx: window }
  const trimmed = trimHistory(input.messages, promptBudget(window, Number(input.options.num_predict)))
  const messages = trimmed.messages
  if (trimmed.dropped)
    yield {
      type: 'notice',
      code: 'history_trimmed',
      message: `The ${trimmed.dropped} oldest message(s) do not fit the ${window}-token context window and were left out.`,
    }

  const metrics: Metrics = {
    model: input.model,
    prompt_tokens: 0,
    completion_tokens: 0,
    total_ms: 0,
    first_token_ms: null,
    tokens_per_second: null,
    tool_steps: 0,
    trimmed_messages: trimmed.dropped,
  }
  let evalNs = 0
  let doneReason = 'stop'
  for (let step = input.stepsTaken ?? 0; ; step++) {
    const offerTools = step < MAX_TOOL_STEPS && toolNames.length > 0
    const tools = offerTools ? toolNames.map((n) => toOllamaTool(gantry.tools.get(n)!)) : undefined
    if (input.signal.aborted) return
    let stream: AsyncIterable<ChatResponse> & { abort(): void }
    try {
      stream = (await ollamaClient(gantry).chat({
        model: input.model,
        messages,
        stream: true,
        // Thinking models think unless told not to (Ollama >= 0.12): say false explicitly.
        think: info.capabilities.includes('thinking') ? think : undefined,
        tools,
        options: options as any,
      })) as typeof stream
    } catch (err) {
      if (input.signal.aborted) return
      throw asGenerationError(err, input.model, gantry.config.ollamaHost)
    }
    const abort = () => stream.abort()
    input.signal.addEventListener('abort', abort, { once: true })
    let thinking = ''
    let content = ''
    let reasoningOpen = false
    const calls: { name: string; arguments: Record<string, unknown> }[] = []
    try {
      for await (const part of stream) {
        const m = part.message ?? {}
        if (m.thinking) {
          metrics.first_token_ms ??= Math.round(performance.now() - started)
          thinking += m.thinking
          reasoningOpen = true
          yield { type: 'reasoning', content: m.thinking }
        }
        if (m.content) {
          metrics.first_token_ms ??= Math.round(performance.now() - started)
          if (reasoningOpen) {
            reasoningOpen = false
            yield { type: 'reasoning_complete', content: thinking }
          }
          content += m.content
          yield { type: 'content', content: m.content }
        }
        if (m.tool_calls?.length) calls.push(...m.tool_calls.map((c) => c.function))
        if (part.done) {
          metrics.prompt_tokens += part.prompt_eval_count ?? 0
          metrics.completion_tokens += part.eval_count ?? 0
          evalNs += part.eval_duration ?? 0
          doneReason = part.done_reason ?? 'stop'
        }
      }
    } catch (err) {
      if (input.signal.aborted) return
      throw asGenerationError(err, input.model, gantry.config.ollamaHost)
    } finally {
      input.signal.removeEventListener('abort', abort)
    }
    if (input.signal.aborted) return
    if (reasoningOpen) yield { type: 'reasoning_complete', content: thinking }
    if (!calls.length || !offerTools) break

    metrics.tool_steps++
    messages.push({
      role: 'assistant',
      content,
      ...(thinking ? { thinking } : {}),
      tool_calls: calls.map((c) => ({ function: c })),
    })
    for (const [i, call] of calls.entries()) {
      const id = `call_${step}_${i}`
      const args = call.arguments && typeof call.arguments === 'object' ? call.arguments : {}
      yield { type: 'tool_call', id, name: call.name, arguments: args, step }
      await input.beforeTool?.()
      const result = await runTool(gantry, input, call.name, args, toolNames)
      if (input.signal.aborted) return
      // Images (a desktop screenshot) go to the model; the event and the stored message note only how many,
      // so a history of screenshots does not bloat every replay.
      const { images, ...recorded } = result
      yield {
        type: 'tool_result',
        tool_call_id: id,
        name: call.name,
        ...recorded,
        ...(images?.length ? { images: images.length } : {}),
      }
      messages.push({
        role: 'tool',
        content: result.content,
        tool_name: call.name,
        ...(images?.length ? { images } : {}),
      })
    }
  }
  metrics.total_ms = Math.round(performance.now() - started)
  metrics.tokens_per_second =
    evalNs > 0 ? Math.round((metrics.completion_tokens / (evalNs / 1e9)) * 10) / 10 : null
  observeChatAnswer(metrics)
  yield { type: 'done', metrics, done_reason: doneReason }
}

/** Runs one tool call; whatever goes wrong becomes a result the model can read, never an exception. */
async function runTool(
  gantry: Gantry,
  input: ConverseInput,
  name: string,
  args: Record<string, unknown>,
  offered: string[],
): Promise<{ content: string; is_error: boolean; images?: string[] }> {
  const tool = offered.includes(name) ? gantry.tools.get(name) : undefined
  if (!tool)
    return {
      content: `Error: there is no tool named "${name}". Available tools: ${offered.join(', ') || 'none'}.`,
      is_error: true,
    }
  try {
    const result = await tool.run(args, {
      gantry,
      user: input.user,
      sessionId: input.sessionId,
      signal: input.signal,
    })
    const text = String(result.content ?? '')
    return {
      content:
        text.length > TOOL_RESULT_MAX_CHARS ? `${text.slice(0, TOOL_RESULT_MAX_CHARS)}\n[truncated]` : text,
      is_error: Boolean(result.isError),
      ...(result.images?.length ? { images: result.images } : {}),
    }
  } catch (err) {
    gantry.log.warn({ tool: name, err: (err as Error).message, stream: input.sessionId }, 'tool failed')
    return { content: `Error: the tool "${name}" failed: ${(err as Error).message}`, is_error: true }
  }
}

export { GenerationError }
