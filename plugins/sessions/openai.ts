import { randomBytes } from 'node:crypto'
import { Elysia, t } from 'elysia'
import type { Message } from 'ollama'
import { auth } from '../../src/core/auth.ts'
import { type Gantry, gantryContext } from '../../src/core/context.ts'
import { ErrorBody, HttpError } from '../../src/core/errors.ts'
import type { Principal } from '../../src/core/keys.ts'
import type { ServerHandle } from '../../src/core/runtime.ts'
import { findAgent, listAgents } from './agents.ts'
import { type ConverseEvent, converse, GenerationError, type Metrics } from './generation.ts'
import { CompletionRequest, ModelList } from './model.ts'
import { installedModels } from './ollama.ts'

type CompletionBody = typeof CompletionRequest.static

const STATUS_OF: Record<string, number> = { model_not_found: 404, ollama_unavailable: 503, ollama_error: 502 }

const asHttpError = (err: unknown) =>
  err instanceof GenerationError
    ? new HttpError(STATUS_OF[err.code] ?? 502, err.code, err.message)
    : new HttpError(502, 'ollama_error', (err as Error).message)

/** OpenAI clients read `error.message` of an error body: model failures are answered in OpenAI's shape. */
const OpenAIErrorBody = t.Object({
  error: t.Object({ message: t.String(), type: t.String(), code: t.String(), param: t.Null() }),
})
const openaiError = (err: unknown) => {
  const e = asHttpError(err)
  return Response.json(
    { error: { message: e.message, type: e.code, code: e.code, param: null } },
    { status: e.status },
  )
}

const textOf = (content: CompletionBody['messages'][number]['content']) =>
  typeof content === 'string'
    ? content
    : (content ?? [])
        .filter((p) => p.type === 'text')
        .map((p) => p.text ?? '')
        .join('')

/** What an OpenAI request asks of Ollama: `model` names one of the caller's agents, or else an Ollama model. */
async function planCompletion(gantry: Gantry, user: Principal, body: CompletionBody) {
  const agent = await findAgent(gantry, user.userId, body.model)
  const messages: Message[] = body.messages.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: textOf(m.content),
  }))
  if (agent?.systemPrompt && !messages.some((m) => m.role === 'system'))
    messages.unshift({ role: 'system', content: agent.systemPrompt })
  const options: Record<string, unknown> = { ...(agent?.options ?? {}) }
  if (body.temperature != null) options.temperature = body.temperature
  if (body.top_p != null) options.top_p = body.top_p
  const maxTokens = body.max_completion_tokens ?? body.max_tokens
  if (maxTokens != null) options.num_predict = maxTokens
  if (body.seed != null) options.seed = body.seed
  if (body.stop != null) options.stop = Array.isArray(body.stop) ? body.stop : [body.stop]
  const effort = body.reasoning_effort
  return {
    model: agent ? (agent.model ?? gantry.config.ollamaModel) : body.model,
    messages,
    think: effort != null ? effort !== 'none' && effort !== 'minimal' : (agent?.think ?? false),
    tools: agent?.tools ?? [],
    options,
  }
}

const finishReason = (doneReason: string) => (doneReason === 'length' ? 'length' : 'stop')
const usageOf = (m: Metrics) => ({
  prompt_tokens: m.prompt_tokens,
  completion_tokens: m.completion_tokens,
  total_tokens: m.prompt_tokens + m.completion_tokens,
})

/** POST /v1/chat/completions and GET /v1/models, for any OpenAI client (tested with the official one). */
export const openaiRoutes = new Elysia({ name: 'sessions:openai', tags: ['OpenAI compatible'] })
  .use(gantryContext)
  .use(auth)
  .post(
    '/v1/chat/completions',
    async ({ gantry, user, body, request }) => {
      const plan = await planCompletion(gantry, user, body)
      const aborter = new AbortController()
      request.signal.addEventListener('abort', () => aborter.abort(), { once: true })
      const events = converse(gantry, { ...plan, user, signal: aborter.signal })
      const id = `chatcmpl-${randomBytes(12).toString('base64url')}`
      const created = Math.floor(Date.now() / 1000)
      // The first event (or a failure to reach the model) decides the status code before any byte is sent.
      let first: IteratorResult<ConverseEvent>
      try {
        first = await events.next()
      } catch (err) {
        return openaiError(err)
      }
      if (!body.stream) {
        let content = ''
        let reasoning = ''
        let done: Extract<ConverseEvent, { type: 'done' }> | undefined
        try {
          for (let r = first; !r.done; r = await events.next()) {
            const e = r.value
            if (e.type === 'content') content += e.content
            else if (e.type === 'reasoning') reasoning += e.content
            else if (e.type === 'done') done = e
          }
        } catch (err) {
          return openaiError(err)
        }
        if (!done) throw new HttpError(499, 'cancelled', 'The request was cancelled.')
        return Response.json({
          id,
          object: 'chat.completion',
          created,
          model: body.model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content, ...(reasoning ? { reasoning_content: reasoning } : {}) },
              finish_reason: finishReason(done.done_reason),
              logprobs: null,
            },
          ],
          usage: usageOf(done.metrics),
        })
      }
      ;(gantry.state.get('core:server') as ServerHandle | undefined)?.timeout(request, 0)
      const encoder = new TextEncoder()
      const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
        encoder.encode(
          `data: ${JSON.stringify({
            id,
            object: 'chat.completion.chunk',
            created,
            model: body.model,
            choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
          })}\n\n`,
        )
      const stream = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(chunk({ role: 'assistant', content: '' }))
          try {
            for (let r = first; !r.done; r = await events.next()) {
              const e = r.value
              if (e.type === 'content') controller.enqueue(chunk({ content: e.content }))
              else if (e.type === 'reasoning') controller.enqueue(chunk({ reasoning_content: e.content }))
              else if (e.type === 'done') {
                controller.enqueue(chunk({}, finishReason(e.done_reason)))
                if (body.stream_options?.include_usage)
                  controller.enqueue(
                    encoder.encode(
                      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: body.model, choices: [], usage: usageOf(e.metrics) })}\n\n`,
                    ),
                  )
              }
            }
            controller.enqueue(encoder.encode('data: [DONE]\n\n'))
          } catch (err) {
            // Mid-stream failures are sent the way OpenAI sends them: an `error` object, then the end.
            const e = asHttpError(err)
            controller.enqueue(
              encoder.encode(
                `data: ${JSON.stringify({ error: { message: e.message, type: e.code, code: e.code } })}\n\n`,
              ),
            )
          }
          try {
            controller.close()
          } catch {}
        },
        cancel() {
          aborter.abort()
        },
      })
      return new Response(stream, {
        headers: {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
        },
      })
    },
    {
      auth: true,
      body: CompletionRequest,
      response: {
        200: t.Any({
          description: 'A chat.completion, or with stream: true an SSE stream of chunks ending data: [DONE]',
        }),
        401: ErrorBody,
        404: OpenAIErrorBody,
        422: ErrorBody,
        502: OpenAIErrorBody,
        503: OpenAIErrorBody,
      },
      detail: {
        summary: 'Chat completion (OpenAI-compatible)',
        description:
          '`model` is one of your agents (its prompt, tools and thinking apply) or an Ollama model. Reasoning comes as `reasoning_content`. Not stored in a session.',
      },
    },
  )
  .get(
    '/v1/models',
    async ({ gantry, user }) => {
      const agents = await listAgents(gantry, user.userId)
      const models = await installedModels(gantry)
      const now = Math.floor(Date.now() / 1000)
      return {
        object: 'list' as const,
        data: [
          ...agents.map((a) => ({
            id: a.name,
            object: 'model' as const,
            created: now,
            owned_by: `gantry-${a.source}`,
          })),
          ...models.map((m) => ({
            id: m.name,
            object: 'model' as const,
            created: Math.floor(m.modifiedAt.getTime() / 1000) || now,
            owned_by: 'ollama',
          })),
        ],
      }
    },
    {
      auth: true,
      response: { 200: ModelList, 401: ErrorBody },
      detail: {
        summary: 'Models (OpenAI-compatible)',
        description: 'Your agents, then the models installed in Ollama.',
      },
    },
  )
