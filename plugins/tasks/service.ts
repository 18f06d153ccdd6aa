/** What the tasks routes (and the agents' tools) do, over the database, the job queue and the event log. */
import { randomBytes } from 'node:crypto'
import { and, asc, desc, eq, sql } from 'drizzle-orm'
import { canSee, type Principal } from '../../src/core/auth.ts'
import type { Gantry } from '../../src/core/context.ts'
import { prepared } from '../../src/core/db.ts'
import { Conflict, NotFound, Unprocessable } from '../../src/core/errors.ts'
import { requestJobCancel, ringJobsSoon } from '../../src/core/jobs.ts'
import { jobs } from '../../src/core/schema.ts'
import { FINISHED, type TaskStatus, taskModules, tasks } from './schema.ts'
import type { TaskPayload } from './workflow/index.ts'

export const TASK_JOB = 'task'
export const DEFAULT_MAX_ITERATIONS = 3

export interface CreateTaskInput {
  prompt: string
  answers?: string[]
  model?: string
  max_iterations?: number
}

type TaskRow = typeof tasks.$inferSelect

export const newTaskId = () => `task-${randomBytes(9).toString('base64url')}`

/**
 * The task, its event stream and its job in one statement, so one round trip and one commit: the three rows
 * appear together (the job may start on another instance the moment it is committed, and finds its stream),
 * or, when anything fails, none of them does. The stream row is the one `events.createStream` writes, and
 * the job row the one `insertJob` writes. The doorbell is not in it: a NOTIFY holds the notification queue's
 * database-wide lock through its commit's WAL flush, which put every POST in one line; `ringJobsSoon` rings
 * after the commit, coalesced. Raw text, not the query builder: this is the hot path of POST /tasks, and
 * building the three inserts cost more CPU than running them.
 */
const CREATE_TASK = `
  with stream as (
    insert into event_streams (id, owner_id, kind) values ($1, $2, 'task')
  ), task as (
    insert into tasks (id, owner_id, prompt, answers, model, max_iterations)
    values ($1, $2, $3, $4::jsonb, $5, $6::int)
    returning *
  ), job as (
    insert into jobs (id, kind, owner_id, payload) values ($1, $7, $2, $8::jsonb)
  )
  select * from task`

/** Stores the task, opens its event stream and queues its job; returns at once (the work runs elsewhere). */
export async function createTask(gantry: Gantry, user: Principal, input: CreateTaskInput): Promise<TaskRow> {
  const prompt = input.prompt.trim()
  if (!prompt) throw Unprocessable('prompt must not be blank', [{ path: 'body/prompt', message: 'blank' }])
  const id = newTaskId()
  const payload: TaskPayload = {
    prompt,
    answers: input.answers ?? [],
    model: input.model?.trim() || gantry.config.ollamaModel,
    maxIterations: input.max_iterations ?? DEFAULT_MAX_ITERATIONS,
  }
  const [row] = await gantry.store.query<RawTaskRow>(CREATE_TASK, [
    id,
    user.userId,
    payload.prompt,
    JSON.stringify(payload.answers),
    payload.model,
    payload.maxIterations,
    TASK_JOB,
    JSON.stringify(payload),
  ])
  ringJobsSoon(gantry.store, TASK_JOB)
  return taskRowOf(row!)
}

/** A `tasks` row as the driver returns it from raw SQL (snake case; PGlite and postgres.js alike). */
interface RawTaskRow {
  id: string
  owner_id: string
  prompt: string
  answers: unknown
  model: string
  max_iterations: number
  status: TaskStatus
  current_module: string | null
  iteration: number
  modules_complete: number
  total_modules: number
  error: string | null
  created_at: unknown
  started_at: unknown
  finished_at: unknown
}

const dateOrNull = (v: unknown) =>
  v === null || v === undefined ? null : v instanceof Date ? v : new Date(String(v))

function taskRowOf(r: RawTaskRow): TaskRow {
  return {
    id: r.id,
    ownerId: r.owner_id,
    prompt: r.prompt,
    answers: (typeof r.answers === 'string' ? JSON.parse(r.answers) : r.answers) as string[],
    model: r.model,
    maxIterations: Number(r.max_iterations),
    status: r.status,
    currentModule: r.current_module,
    iteration: Number(r.iteration),
    modulesComplete: Number(r.modules_complete),
    totalModules: Number(r.total_modules),
    error: r.error,
    createdAt: dateOrNull(r.created_at)!,
    startedAt: dateOrNull(r.started_at),
    finishedAt: dateOrNull(r.finished_at),
  }
}

const taskById = prepared((db) =>
  db
    .select()
    .from(tasks)
    .where(eq(tasks.id, sql.placeholder('id')))
    .prepare('gantry_task_by_id'),
)

/** The task if the caller may see it; someone else's task is "not found", like a missing one. */
export async function findTask(gantry: Gantry, user: Principal, id: string): Promise<TaskRow> {
  const [row] = await taskById(gantry.db).execute({ id })
  if (!row || !canSee(user, row.ownerId)) throw NotFound(`Task ${id}`)
  return row
}

export async function listTasks(
  gantry: Gantry,
  user: Principal,
  opts: { status?: TaskStatus; limit: number; offset: number },
): Promise<{ rows: TaskRow[]; hasMore: boolean }> {
  const where = and(eq(tasks.ownerId, user.userId), opts.status ? eq(tasks.status, opts.status) : undefined)
  const rows = await gantry.db
    .select()
    .from(tasks)
    .where(where)
    .orderBy(desc(tasks.createdAt), desc(tasks.id))
    .limit(opts.limit + 1)
    .offset(opts.offset)
  return { rows: rows.slice(0, opts.limit), hasMore: rows.length > opts.limit }
}

export async function taskModulesOf(gantry: Gantry, taskId: string) {
  return gantry.db
    .select()
    .from(taskModules)
    .where(eq(taskModules.taskId, taskId))
    .orderBy(asc(taskModules.position))
}

const isFinished = (status: TaskStatus) => FINISHED.includes(status)

/**
 * Cancels a task in any unfinished state. A queued one is cancelled here and now; a running one is stopped by
 * the instance running it (its model request aborted, its test run killed) within a second.
 */
export async function cancelTask(
  gantry: Gantry,
  user: Principal,
  id: string,
): Promise<'cancelling' | 'cancelled'> {
  const task = await findTask(gantry, user, id)
  if (isFinished(task.status))
    throw Conflict(`Task ${id} is already ${task.status}.`, { status: task.status })
  const result = await requestJobCancel(gantry.store, id)
  if (result === 'finished') {
    const again = await findTask(gantry, user, id)
    throw Conflict(`Task ${id} has already finished.`, { status: again.status })
  }
  if (result === 'requested') return 'cancelling'
  await gantry.events.appendMany(id, [
    { type: 'LOG', data: { level: 'INFO', message: 'Task cancelled before it started' } },
    { type: 'TASK_CANCELLED', data: { reason: 'cancelled on request', module: null } },
  ])
  // The row after the events: whoever sees "cancelled" finds TASK_CANCELLED in the log.
  await gantry.db.update(tasks).set({ status: 'cancelled', finishedAt: new Date() }).where(eq(tasks.id, id))
  await gantry.events.finishStream(id)
  return 'cancelled'
}

/** Queues guidance for the task's next model call (the same path the WebSocket's INTERVENTION takes). */
export async function addIntervention(
  gantry: Gantry,
  user: Principal,
  id: string,
  guidance: string,
): Promise<number> {
  const text = guidance.trim()
  if (!text) throw Unprocessable('guidance must not be blank', [{ path: 'body/guidance', message: 'blank' }])
  const task = await findTask(gantry, user, id)
  if (isFinished(task.status))
    throw Conflict(`Task ${id} is ${task.status}; guidance can only steer a queued or running task.`, {
      status: task.status,
    })
  const event = await gantry.events.append(id, 'INTERVENTION_RECEIVED', {
    guidance: text,
    user_id: user.userId,
    via: 'http',
  })
  // The task may have ended between the check above and the append: then no model call will ever see it.
  const [ended] = await gantry.store.query<{ type: string }>(
    `select type from events where stream = $1 and seq < $2 and type = any($3::text[]) limit 1`,
    [id, event.seq, TERMINAL_EVENTS],
  )
  if (ended) {
    const reason = 'The task had already finished; guidance is no longer applied.'
    await gantry.events.append(id, 'INTERVENTION_NOT_APPLIED', {
      guidance: text,
      received_seq: event.seq,
      reason,
    })
    throw Conflict(`Task ${id} finished before the guidance arrived. ${reason}`, {
      status: (await findTask(gantry, user, id)).status,
      received_seq: event.seq,
    })
  }
  return event.seq
}

const TERMINAL_EVENTS = ['TASK_COMPLETE', 'TASK_FAILED', 'TASK_CANCELLED']

/** Deletes a finished task with its modules, job, events and logs. */
export async function deleteTask(gantry: Gantry, user: Principal, id: string): Promise<void> {
  const task = await findTask(gantry, user, id)
  if (!isFinished(task.status))
    throw Conflict(`Task ${id} is ${task.status}: cancel it first, then delete it.`, { status: task.status })
  await gantry.db.transaction(async (tx) => {
    await tx.delete(tasks).where(eq(tasks.id, id))
    await tx.delete(jobs).where(eq(jobs.id, id))
  })
  await gantry.events.deleteStream(id)
}

export function taskView(row: TaskRow) {
  return {
    task_id: row.id,
    status: row.status,
    prompt: row.prompt,
    model: row.model,
    max_iterations: row.maxIterations,
    current_module: row.currentModule,
    iteration: row.iteration,
    modules_complete: row.modulesComplete,
    total_modules: row.totalModules,
    progress: row.totalModules ? Math.round((row.modulesComplete / row.totalModules) * 100) / 100 : 0,
    created_at: row.createdAt.toISOString(),
    started_at: row.startedAt?.toISOString() ?? null,
    finished_at: row.finishedAt?.toISOString() ?? null,
    ...(row.error ? { error: row.error } : {}),
  }
}
