import { t } from 'elysia'

/** Request and response shapes of the sessions plugin: one declaration for validation, Swagger and clients. */

const Options = t.Record(t.String(), t.Any(), {
  description: 'Ollama model options (temperature, num_ctx, num_predict, …)',
})
const Name = t.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9_.:-]+$',
  description: 'Letters, digits, _ . : -',
})

export const MESSAGE_MAX_CHARS = 100_000

export const SessionCreate = t.Object(
  {
    name: t.Optional({
      ...Name,
      description: 'Your own handle for the session (e.g. test_session); unique among your sessions',
    }),
    title: t.Optional(t.String({ maxLength: 200 })),
    agent: t.Optional(t.String({ minLength: 1, maxLength: 64, description: 'Agent name (GET /v1/agents)' })),
    model: t.Optional(
      t.String({ minLength: 1, maxLength: 200, description: 'Ollama model; default: the agent’s' }),
    ),
    system_prompt: t.Optional(t.String({ maxLength: 20_000 })),
    options: t.Optional(Options),
  },
  {
    additionalProperties: false,
    // What Swagger UI pre-fills: values the server takes as they stand (a generated "string" names no agent).
    example: {
      name: 'test_session',
      title: 'Release planning',
      agent: 'assistant',
      options: { temperature: 0.7 },
    },
  },
)

export const SessionPatch = t.Object(
  {
    title: t.Optional(t.Nullable(t.String({ maxLength: 200 }))),
    agent: t.Optional(t.String({ minLength: 1, maxLength: 64 })),
    model: t.Optional(t.Nullable(t.String({ minLength: 1, maxLength: 200 }))),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    example: { title: 'Release planning', agent: 'assistant' },
  },
)

export const SessionBody = t.Object({
  session_id: t.String({ description: 'sess-…; also the id of its event stream' }),
  name: t.String(),
  title: t.Nullable(t.String()),
  agent: t.String(),
  model: t.Nullable(t.String()),
  system_prompt: t.Nullable(t.String()),
  options: Options,
  generating: t.Boolean({ description: 'True while an answer is being generated' }),
  active_message_id: t.Nullable(t.String()),
  created_at: t.String(),
  last_activity_at: t.String(),
  websocket_url: t.String(),
})

export const SessionList = t.Object({
  sessions: t.Array(SessionBody),
  next_cursor: t.Nullable(t.String({ description: 'Pass as ?cursor= for the next page' })),
})

export const Page = t.Object(
  {
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: t.Optional(t.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
)

export const MessagePage = t.Object(
  {
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: t.Optional(t.String({ maxLength: 200 })),
    order: t.Optional(
      t.Union([t.Literal('asc'), t.Literal('desc')], {
        default: 'asc',
        description: 'desc: newest first, and next_cursor pages back to older messages',
      }),
    ),
  },
  { additionalProperties: false },
)

export const SessionParams = t.Object({
  id: t.String({ minLength: 1, maxLength: 128, description: 'The session id (sess-…) or your name for it' }),
})

const ToolCallBody = t.Object({
  id: t.String(),
  name: t.String(),
  arguments: t.Record(t.String(), t.Any()),
  step: t.Number(),
})
const ToolResultBody = t.Object({
  tool_call_id: t.String(),
  name: t.String(),
  content: t.String(),
  is_error: t.Boolean(),
})

export const MessageBody = t.Object({
  message_id: t.String(),
  seq: t.Number(),
  role: t.String(),
  content: t.String(),
  thinking: t.Nullable(t.String()),
  tool_calls: t.Array(ToolCallBody),
  tool_results: t.Array(ToolResultBody),
  agent: t.Nullable(t.String()),
  model: t.Nullable(t.String()),
  status: t.String({ description: 'pending, streaming, complete, incomplete or failed' }),
  incomplete: t.Boolean({ description: 'The answer was cut short (cancelled, or Ollama failed mid-answer)' }),
  error: t.Nullable(t.Object({ code: t.String(), message: t.String() })),
  prompt_tokens: t.Nullable(t.Number()),
  completion_tokens: t.Nullable(t.Number()),
  timings: t.Nullable(t.Record(t.String(), t.Number())),
  created_at: t.String(),
  completed_at: t.Nullable(t.String()),
})

export const MessageList = t.Object({
  messages: t.Array(MessageBody),
  next_cursor: t.Nullable(t.String()),
})

export const ChatRequest = t.Object(
  {
    message: t.String({
      minLength: 1,
      maxLength: MESSAGE_MAX_CHARS,
      description: `The user's message (1 to ${MESSAGE_MAX_CHARS} characters)`,
    }),
    agent_name: t.Optional(t.String({ minLength: 1, maxLength: 64 })),
    enable_reasoning: t.Optional(t.Boolean({ description: 'Ask the model to think (Ollama `think`)' })),
  },
  {
    additionalProperties: false,
    example: { message: 'What is the capital of France?', agent_name: 'assistant', enable_reasoning: true },
  },
)

export const ChatAccepted = t.Object({
  session_id: t.String(),
  message_id: t.String(),
  assistant_message_id: t.String(),
  websocket_url: t.String({ description: 'Follow the answer live; ?since=<seq> resumes' }),
  since: t.Number({ description: 'The event seq just before this exchange' }),
})

export const CancelResult = t.Object({
  cancelled: t.Boolean(),
  message_id: t.Nullable(t.String()),
})

export const AgentCreate = t.Object(
  {
    name: Name,
    description: t.Optional(t.String({ maxLength: 500 })),
    model: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
    system_prompt: t.Optional(t.String({ maxLength: 20_000 })),
    tools: t.Optional(t.Array(t.String({ minLength: 1, maxLength: 64 }), { maxItems: 32 })),
    think: t.Optional(t.Boolean()),
    options: t.Optional(Options),
  },
  {
    additionalProperties: false,
    example: {
      name: 'task_helper',
      description: 'Starts coding tasks and reports on them',
      system_prompt: 'You help the user start and follow coding tasks.',
      tools: ['start_coding_task', 'list_my_tasks'],
      think: false,
      options: { temperature: 0.2 },
    },
  },
)

export const AgentBody = t.Object({
  name: t.String(),
  description: t.String(),
  model: t.Nullable(t.String()),
  system_prompt: t.String(),
  tools: t.Array(t.String()),
  think: t.Boolean(),
  options: Options,
  source: t.Union([t.Literal('builtin'), t.Literal('plugin'), t.Literal('user')]),
})

export const AgentList = t.Object({ agents: t.Array(AgentBody), object: t.Literal('list') })

// OpenAI-compatible shapes. Open objects: OpenAI clients send fields we do not use (n, user, logprobs…).
const OpenAIMessage = t.Object({
  role: t.Union([
    t.Literal('system'),
    t.Literal('developer'),
    t.Literal('user'),
    t.Literal('assistant'),
    t.Literal('tool'),
  ]),
  content: t.Optional(
    t.Nullable(
      t.Union([
        t.String({ maxLength: MESSAGE_MAX_CHARS }),
        t.Array(t.Object({ type: t.String(), text: t.Optional(t.String()) })),
      ]),
    ),
  ),
  name: t.Optional(t.String()),
  tool_call_id: t.Optional(t.String()),
  tool_calls: t.Optional(t.Array(t.Any())),
})

export const CompletionRequest = t.Object(
  {
    model: t.String({ minLength: 1, maxLength: 200, description: 'An agent name or an Ollama model' }),
    messages: t.Array(OpenAIMessage, { minItems: 1, maxItems: 1000 }),
    stream: t.Optional(t.Boolean()),
    stream_options: t.Optional(t.Nullable(t.Object({ include_usage: t.Optional(t.Boolean()) }))),
    temperature: t.Optional(t.Nullable(t.Number({ minimum: 0, maximum: 2 }))),
    top_p: t.Optional(t.Nullable(t.Number({ minimum: 0, maximum: 1 }))),
    max_tokens: t.Optional(t.Nullable(t.Integer({ minimum: 1 }))),
    max_completion_tokens: t.Optional(t.Nullable(t.Integer({ minimum: 1 }))),
    seed: t.Optional(t.Nullable(t.Integer())),
    stop: t.Optional(t.Nullable(t.Union([t.String(), t.Array(t.String(), { maxItems: 4 })]))),
    reasoning_effort: t.Optional(t.Nullable(t.String())),
  },
  {
    example: {
      model: 'assistant',
      messages: [{ role: 'user', content: 'Say hello in one word.' }],
      stream: false,
      temperature: 0.7,
      max_tokens: 256,
    },
  },
)

export const ModelList = t.Object({
  object: t.Literal('list'),
  data: t.Array(
    t.Object({ id: t.String(), object: t.Literal('model'), created: t.Number(), owned_by: t.String() }),
  ),
})
