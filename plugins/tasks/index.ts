import { join } from 'node:path'
import { Elysia } from 'elysia'
import { auth, type Principal } from '../../src/core/auth.ts'
import { type Gantry, gantryContext, gantryOf } from '../../src/core/context.ts'
import { ErrorBody } from '../../src/core/errors.ts'
import { publicOrigin } from '../../src/core/http.ts'
import { JobRunner } from '../../src/core/jobs.ts'
import type { PluginMeta } from '../../src/core/loader.ts'
import {
  CancelResult,
  Deleted,
  InterventionAccepted,
  InterventionCreate,
  TaskCreate,
  TaskCreated,
  TaskList,
  TaskListQuery,
  TaskParams,
  TaskResults,
  TaskView,
} from './model.ts'
import { startTaskRetention } from './retention.ts'
import { createExecutor, type Execution } from './sandbox.ts'
import {
  addIntervention,
  cancelTask,
  createTask,
  deleteTask,
  findTask,
  listTasks,
  TASK_JOB,
  taskModulesOf,
  taskView,
} from './service.ts'
import { registerTaskTools } from './tools.ts'
import { sweepWorkFolders } from './workdirs.ts'
import { runTask, type TaskCheckpoint, type TaskPayload } from './workflow/index.ts'

export const meta: PluginMeta = {
  description:
    'Durable coding tasks: plan, write, test in a sandbox and iterate with a local model; watch, steer, cancel',
  entryPoints: { tasks: '/tasks' },
}

interface TasksState {
  runner: JobRunner<TaskPayload, TaskCheckpoint>
  execution: Promise<Execution>
  unregister: (() => void)[]
}

const STATE = 'tasks'
const errors = { 401: ErrorBody, 404: ErrorBody, 422: ErrorBody }

async function start(gantry: Gantry): Promise<void> {
  const { config, log } = gantry
  const workRoot = join(config.dataDir, 'sandbox')
  const swept = sweepWorkFolders(workRoot)
  if (swept.length) log.warn({ folders: swept }, 'removed sandbox work folders left by a server that died')
  // The sandbox's probe run takes a moment (more on a busy machine): the server is up meanwhile, and tasks
  // wait for its verdict before they start.
  const execution = createExecutor(config.codeExecution, {
    bwrap: config.sandboxBwrap,
    limits: { wallClockMs: config.sandboxTimeoutMs },
    workRoot,
  })
    .catch((err): Execution => ({ problem: `The code runner could not be set up: ${err}`, close() {} }))
    .then((made) => {
      if (made.problem) log.warn({ codeExecution: config.codeExecution }, made.problem)
      else if (config.codeExecution === 'unsandboxed')
        log.warn(
          'CODE_EXECUTION=unsandboxed: generated code runs with resource limits only, not in a sandbox',
        )
      else if (config.codeExecution === 'off') log.info('CODE_EXECUTION=off: generated tests will not be run')
      return made
    })
  const runner = new JobRunner<TaskPayload, TaskCheckpoint>(gantry.store, log, {
    kind: TASK_JOB,
    concurrency: config.taskConcurrency,
    leaseMs: config.jobLeaseMs,
    handler: async (job, ctx) => {
      const { executor, problem } = await execution
      return runTask({ gantry, executor, executionProblem: problem }, job, ctx)
    },
  })
  await runner.start()
  gantry.state.set(STATE, {
    runner,
    execution,
    unregister: [...registerTaskTools(gantry), startTaskRetention(gantry)],
  } satisfies TasksState)
}

async function stop(gantry: Gantry): Promise<void> {
  const state = gantry.state.get(STATE) as TasksState | undefined
  if (!state) return
  gantry.state.delete(STATE)
  for (const off of state.unregister) off()
  await state.runner.stop()
  ;(await state.execution).close()
}

const links = (request: Request, gantry: Gantry, id: string) => {
  const origin = publicOrigin(request, gantry)
  return { websocket_url: `${origin.ws}/ws/${id}`, events_url: `${origin.http}/api/streams/${id}/events` }
}

const list = async ({
  gantry,
  user,
  query,
}: {
  gantry: Gantry
  user: Principal
  query: typeof TaskListQuery.static
}) => {
  const limit = query.limit ?? 20
  const offset = query.offset ?? 0
  const { rows, hasMore } = await listTasks(gantry, user, { status: query.status, limit, offset })
  return { tasks: rows.map(taskView), limit, offset, has_more: hasMore }
}

const listDoc = {
  auth: true as const,
  query: TaskListQuery,
  response: { 200: TaskList, ...errors },
  detail: {
    summary: 'List my tasks',
    description: 'Newest first, `limit` (≤ 100) per page from `offset`; `status` filters.',
  },
}

/**
 * `POST /tasks` queues a coding task and answers at once; any instance's runner picks it up. Progress,
 * results, cancel, guidance and delete under `/tasks/:id`.
 */
export default new Elysia({ name: 'tasks', tags: ['Tasks'] })
  .use(gantryContext)
  .use(auth)
  .onStart((app) => start(gantryOf(app)))
  .onStop((app) => stop(gantryOf(app)))
  .post(
    '/tasks',
    async ({ gantry, user, body, request, set }) => {
      const task = await createTask(gantry, user, body)
      set.status = 201
      return { task_id: task.id, status: task.status, ...links(request, gantry, task.id) }
    },
    {
      auth: true,
      body: TaskCreate,
      response: { 201: TaskCreated, ...errors },
      detail: {
        summary: 'Start a coding task',
        description:
          'Queues the task and returns at once with absolute `websocket_url` and `events_url` (honouring X-Forwarded-Proto/Host from a trusted proxy). The work runs in the background on any instance.',
      },
    },
  )
  .get('/tasks', list, listDoc)
  .get('/v1/tasks', list, { ...listDoc, detail: { ...listDoc.detail, summary: 'List my tasks (v1)' } })
  .get('/tasks/:id', async ({ gantry, user, params }) => taskView(await findTask(gantry, user, params.id)), {
    auth: true,
    params: TaskParams,
    response: { 200: TaskView, ...errors },
    detail: {
      summary: 'Task status',
      description: 'Status, current module and iteration, modules complete of total, progress 0–1.',
    },
  })
  .get(
    '/tasks/:id/results',
    async ({ gantry, user, params }) => {
      const task = await findTask(gantry, user, params.id)
      const modules = await taskModulesOf(gantry, task.id)
      return {
        task_id: task.id,
        status: task.status,
        modules: modules.map((m) => ({
          name: `${m.name}.ts`,
          purpose: m.purpose,
          status: m.status,
          code: m.code,
          tests: m.tests,
          quality_score: m.qualityScore === null ? null : Math.round(m.qualityScore * 100) / 100,
          iterations: m.iterations,
          test_report: m.testReport ?? null,
        })),
      }
    },
    {
      auth: true,
      params: TaskParams,
      response: { 200: TaskResults, ...errors },
      detail: {
        summary: 'Task results',
        description:
          'Each module with its code, tests, quality score and test report; partial while running.',
      },
    },
  )
  .post(
    '/tasks/:id/cancel',
    async ({ gantry, user, params, set }) => {
      const status = await cancelTask(gantry, user, params.id)
      if (status === 'cancelling') set.status = 202
      return { task_id: params.id, status }
    },
    {
      auth: true,
      params: TaskParams,
      response: { 200: CancelResult, 202: CancelResult, 409: ErrorBody, ...errors },
      detail: {
        summary: 'Cancel a task',
        description:
          'A queued task is cancelled at once (200); a running one stops within a second on whichever instance runs it (202, then TASK_CANCELLED). A finished task answers 409.',
      },
    },
  )
  .post(
    '/tasks/:id/interventions',
    async ({ gantry, user, params, body, set }) => {
      const seq = await addIntervention(gantry, user, params.id, body.guidance)
      set.status = 202
      return { task_id: params.id, accepted: true as const, seq }
    },
    {
      auth: true,
      params: TaskParams,
      body: InterventionCreate,
      response: { 202: InterventionAccepted, 409: ErrorBody, ...errors },
      detail: {
        summary: 'Steer a task',
        description:
          'Guidance applied at the next model call (INTERVENTION_RECEIVED now, INTERVENTION_APPLIED when used). When the task ends before another model call, INTERVENTION_NOT_APPLIED says so with the reason. 409 when the task has finished (guidance that arrives as it ends is also answered INTERVENTION_NOT_APPLIED).',
      },
    },
  )
  .delete(
    '/tasks/:id',
    async ({ gantry, user, params }) => {
      await deleteTask(gantry, user, params.id)
      return { deleted: params.id }
    },
    {
      auth: true,
      params: TaskParams,
      response: { 200: Deleted, 409: ErrorBody, ...errors },
      detail: {
        summary: 'Delete a finished task',
        description: 'With its modules, events and logs. A task still queued or running answers 409.',
      },
    },
  )
