/** The coding-task tools: start (and optionally follow), status, results, list, steer, cancel. */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { MAX_ITERATIONS, MAX_PROMPT_CHARS } from '../tasks/model.ts'
import {
  addIntervention,
  cancelTask,
  createTask,
  findTask,
  listTasks,
  taskModulesOf,
  taskView,
} from '../tasks/service.ts'
import { type CallExtra, guarded, type McpCall, stopSignal, text } from './call.ts'
import { followTask } from './follow.ts'

/** How long one `wait: true` call follows a task before answering with where it stands. */
export const MAX_WAIT_MS = 30 * 60_000

const TaskId = z
  .string()
  .min(1)
  .max(200)
  .describe('The task id, task-… (from start_coding_task or list_tasks)')

// Built once per process: every request builds its own MCP server, but never these.
const StartInput = z.object({
  prompt: z
    .string()
    .min(1)
    .max(MAX_PROMPT_CHARS)
    .describe('What to build, in plain words, e.g. "Build an email validator with tests"'),
  answers: z
    .array(z.string().max(4000))
    .max(50)
    .optional()
    .describe('Answers to clarifying questions or extra requirements, added to the plan'),
  max_iterations: z
    .number()
    .int()
    .min(1)
    .max(MAX_ITERATIONS)
    .optional()
    .describe('Attempts per module (write, test, fix); default 3'),
  model: z.string().min(1).max(200).optional().describe('Ollama model to use; the server default if omitted'),
  wait: z
    .boolean()
    .optional()
    .describe('true: follow the task to the end and return its results (up to 30 minutes)'),
})
const TaskIdInput = z.object({ task_id: TaskId })
const ListInput = z.object({
  status: z.enum(['queued', 'running', 'completed', 'failed', 'cancelled']).optional(),
  limit: z.number().int().min(1).max(100).optional().describe('How many (default 20)'),
  offset: z.number().int().min(0).max(1_000_000).optional().describe('Skip this many (paging)'),
})
const GuidanceInput = z.object({
  task_id: TaskId,
  guidance: z.string().min(1).max(4000).describe('What the task should do differently'),
})

export function taskLinks(call: McpCall, id: string) {
  const { http, ws } = call.origin
  return {
    status_url: `${http}/tasks/${id}`,
    results_url: `${http}/tasks/${id}/results`,
    logs_url: `${http}/tasks/${id}/logs`,
    websocket_url: `${ws}/ws/${id}`,
    events_url: `${http}/api/streams/${id}/events`,
    resources: [`gantry://tasks/${id}`, `gantry://tasks/${id}/results`, `gantry://tasks/${id}/log`],
  }
}

/** The task's status and every module with its code, tests, quality score and test report. */
export async function taskResults(call: McpCall, id: string) {
  const task = await findTask(call.gantry, call.user, id)
  const modules = await taskModulesOf(call.gantry, task.id)
  return {
    ...taskView(task),
    modules: modules.map((m) => ({
      name: `${m.name}.ts`,
      purpose: m.purpose,
      status: m.status,
      quality_score: m.qualityScore === null ? null : Math.round(m.qualityScore * 100) / 100,
      iterations: m.iterations,
      code: m.code,
      tests: m.tests,
      test_report: m.testReport ?? null,
    })),
  }
}

export function registerTaskTools(server: McpServer, call: McpCall): void {
  server.registerTool(
    'start_coding_task',
    {
      title: 'Start a coding task',
      description:
        'Hand a programming job to Gantry, which plans it as TypeScript modules, writes each with unit tests using a local model, runs the tests in a sandbox and iterates until they pass. Use it for a self-contained piece of code (a library, a parser, a validator), not for questions. Returns the task id, status and URLs at once; the task keeps running on the server even if you disconnect. With wait: true the call stays open, reports progress (modules done of planned) and returns the finished modules with code, tests and quality scores; for long jobs prefer wait: false and check with get_task.',
      inputSchema: StartInput,
      annotations: { title: 'Start a coding task', readOnlyHint: false, openWorldHint: false },
    },
    (args, extra) =>
      guarded(call, 'start_coding_task', async () => {
        const task = await createTask(call.gantry, call.user, {
          prompt: args.prompt,
          answers: args.answers,
          model: args.model,
          max_iterations: args.max_iterations,
        })
        const started = { task_id: task.id, status: task.status, ...taskLinks(call, task.id) }
        if (!args.wait) return text(started)
        return text(await waitForTask(call, task.id, extra as CallExtra))
      }),
  )

  server.registerTool(
    'get_task',
    {
      title: 'Task status',
      description:
        'Where a coding task stands: status (queued, running, completed, failed, cancelled), the module being written, its iteration, modules complete of total, and progress from 0 to 1.',
      inputSchema: TaskIdInput,
      annotations: { readOnlyHint: true },
    },
    (args) =>
      guarded(call, 'get_task', async () => {
        const task = await findTask(call.gantry, call.user, args.task_id)
        return text({ ...taskView(task), ...taskLinks(call, task.id) })
      }),
  )

  server.registerTool(
    'get_task_results',
    {
      title: 'Task results',
      description:
        "A coding task's modules: each with its TypeScript code, its tests, a quality score (0.8 × test pass rate + 0.2 × type check) and the test report. Partial while the task runs.",
      inputSchema: TaskIdInput,
      annotations: { readOnlyHint: true },
    },
    (args) => guarded(call, 'get_task_results', async () => text(await taskResults(call, args.task_id))),
  )

  server.registerTool(
    'list_tasks',
    {
      title: 'List my coding tasks',
      description: 'Your coding tasks, newest first, with status and progress; filter by status.',
      inputSchema: ListInput,
      annotations: { readOnlyHint: true },
    },
    (args) =>
      guarded(call, 'list_tasks', async () => {
        const limit = args.limit ?? 20
        const offset = args.offset ?? 0
        const { rows, hasMore } = await listTasks(call.gantry, call.user, {
          status: args.status,
          limit,
          offset,
        })
        return text({ tasks: rows.map(taskView), limit, offset, has_more: hasMore })
      }),
  )

  server.registerTool(
    'intervene_in_task',
    {
      title: 'Steer a running task',
      description:
        'Give a queued or running coding task guidance ("use a regex", "skip the CLI module"); it is applied at its next model call. Fails for a finished task.',
      inputSchema: GuidanceInput,
      annotations: { readOnlyHint: false },
    },
    (args) =>
      guarded(call, 'intervene_in_task', async () => {
        const seq = await addIntervention(call.gantry, call.user, args.task_id, args.guidance)
        return text({ task_id: args.task_id, accepted: true, seq })
      }),
  )

  server.registerTool(
    'cancel_task',
    {
      title: 'Cancel a task',
      description:
        'Stop a queued or running coding task. A queued one is cancelled at once; a running one stops within a second. Fails for a finished task.',
      inputSchema: TaskIdInput,
      annotations: { readOnlyHint: false, destructiveHint: true },
    },
    (args) =>
      guarded(call, 'cancel_task', async () => {
        const status = await cancelTask(call.gantry, call.user, args.task_id)
        return text({ task_id: args.task_id, status })
      }),
  )
}

/**
 * Follows the task until it ends and returns its results. A cancelled call or a gone client only stops the
 * following: the task itself is durable and goes on.
 */
async function waitForTask(call: McpCall, id: string, extra: CallExtra) {
  const token = extra._meta?.progressToken
  const stop = stopSignal(call, extra)
  try {
    const outcome = await followTask(
      call.gantry,
      id,
      stop.signal,
      async (step) => {
        if (token === undefined) return
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken: token, ...step },
        })
      },
      MAX_WAIT_MS,
    )
    const results = await taskResults(call, id)
    if (outcome === 'finished') return results
    return {
      ...results,
      note:
        outcome === 'timed_out'
          ? `Still ${results.status} after ${MAX_WAIT_MS / 60_000} minutes of waiting; the task goes on. Check it with get_task.`
          : 'Stopped waiting; the task goes on. Check it with get_task.',
      ...taskLinks(call, id),
    }
  } finally {
    stop.release()
  }
}
