import { t } from 'elysia'
import type { TASK_STATUSES } from './schema.ts'

export const MAX_PROMPT_CHARS = 20_000
export const MAX_ITERATIONS = 20

const Status = t.Union(
  [
    t.Literal('queued'),
    t.Literal('running'),
    t.Literal('completed'),
    t.Literal('failed'),
    t.Literal('cancelled'),
  ],
  { description: 'queued → running → completed | failed | cancelled' },
)
// The schema's list and this union must say the same thing.
true satisfies (typeof TASK_STATUSES)[number] extends typeof Status.static ? true : false

export const TaskCreate = t.Object(
  {
    prompt: t.String({
      minLength: 1,
      maxLength: MAX_PROMPT_CHARS,
      description: 'What to build, e.g. "Build an email validator"',
    }),
    answers: t.Optional(
      t.Array(t.String({ maxLength: 4000 }), {
        maxItems: 50,
        description: 'Answers to clarifying questions, added to the planning prompt',
      }),
    ),
    model: t.Optional(
      t.String({ minLength: 1, maxLength: 200, description: 'Ollama model; defaults to OLLAMA_MODEL' }),
    ),
    max_iterations: t.Optional(
      t.Integer({
        minimum: 1,
        maximum: MAX_ITERATIONS,
        description: 'Attempts per module (generate, test, feed failures back); default 3',
      }),
    ),
  },
  {
    additionalProperties: false,
    // What Swagger UI pre-fills; the README's flagship task.
    example: { prompt: 'Build an email validator', max_iterations: 3 },
  },
)

export const TaskCreated = t.Object({
  task_id: t.String({ description: 'task-…' }),
  status: Status,
  websocket_url: t.String({ description: 'Live events over WebSocket (absolute; wss:// behind TLS)' }),
  events_url: t.String({ description: 'The same events as Server-Sent Events' }),
})

export const TaskParams = t.Object({ id: t.String({ maxLength: 200 }) })

export const TaskView = t.Object({
  task_id: t.String(),
  status: Status,
  prompt: t.String(),
  model: t.String(),
  max_iterations: t.Integer(),
  current_module: t.Nullable(t.String()),
  iteration: t.Integer({ description: 'Iteration of the current module' }),
  modules_complete: t.Integer(),
  total_modules: t.Integer(),
  progress: t.Number({ description: 'modules_complete / total_modules, 0 before planning' }),
  created_at: t.String(),
  started_at: t.Nullable(t.String()),
  finished_at: t.Nullable(t.String()),
  error: t.Optional(t.String()),
})

export const TaskListQuery = t.Object(
  {
    status: t.Optional(Status),
    limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, description: 'Page size, default 20' })),
    offset: t.Optional(t.Integer({ minimum: 0, maximum: 1_000_000 })),
  },
  { additionalProperties: false },
)

export const TaskList = t.Object({
  tasks: t.Array(TaskView),
  limit: t.Integer(),
  offset: t.Integer(),
  has_more: t.Boolean(),
})

export const TestReportView = t.Object({
  passed: t.Integer(),
  failed: t.Integer(),
  pass_rate: t.Number(),
  type_check: t.Nullable(t.Boolean()),
  timed_out: t.Boolean(),
  output: t.String(),
})

export const ModuleResult = t.Object({
  name: t.String(),
  purpose: t.String(),
  status: t.Union([t.Literal('pending'), t.Literal('running'), t.Literal('complete')]),
  code: t.Nullable(t.String()),
  tests: t.Nullable(t.String()),
  quality_score: t.Nullable(
    t.Number({ description: '0.8 × test pass rate + 0.2 × type check; null when tests are off' }),
  ),
  iterations: t.Integer(),
  test_report: t.Nullable(TestReportView),
})

export const TaskResults = t.Object({
  task_id: t.String(),
  status: Status,
  modules: t.Array(ModuleResult),
})

export const CancelResult = t.Object({
  task_id: t.String(),
  status: t.Union([t.Literal('cancelling'), t.Literal('cancelled')], {
    description: 'cancelled at once when queued; cancelling while the running instance stops it',
  }),
})

export const InterventionCreate = t.Object(
  { guidance: t.String({ minLength: 1, maxLength: 4000, description: 'Applied at the next model call' }) },
  { additionalProperties: false, example: { guidance: 'Use a regular expression, not a library.' } },
)

export const InterventionAccepted = t.Object({
  task_id: t.String(),
  accepted: t.Literal(true),
  seq: t.Integer({ description: 'Seq of the INTERVENTION_RECEIVED event' }),
})

export const Deleted = t.Object({ deleted: t.String() })
