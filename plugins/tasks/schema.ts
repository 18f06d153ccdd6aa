import { index, integer, jsonb, pgTable, primaryKey, real, text, timestamp } from 'drizzle-orm/pg-core'
import { users } from '../../src/core/schema.ts'

export const TASK_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const
export type TaskStatus = (typeof TASK_STATUSES)[number]
export const FINISHED: readonly TaskStatus[] = ['completed', 'failed', 'cancelled']

/**
 * A coding task as its owner sees it. The work itself is the job with the same id (src/core/jobs.ts); this row
 * is the progress the workflow reports as it goes.
 */
export const tasks = pgTable(
  'tasks',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    prompt: text('prompt').notNull(),
    answers: jsonb('answers').$type<string[]>().notNull().default([]),
    model: text('model').notNull(),
    maxIterations: integer('max_iterations').notNull(),
    status: text('status', { enum: TASK_STATUSES }).notNull().default('queued'),
    currentModule: text('current_module'),
    iteration: integer('iteration').notNull().default(0),
    modulesComplete: integer('modules_complete').notNull().default(0),
    totalModules: integer('total_modules').notNull().default(0),
    error: text('error'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [index('tasks_owner_created_idx').on(t.ownerId, t.createdAt)],
)

/** What one test run measured; the quality score is computed from it (see docs/tasks.md). */
export interface TestReport {
  passed: number
  failed: number
  pass_rate: number
  /** null when the type checker is not installed. */
  type_check: boolean | null
  timed_out: boolean
  /** The end of the test runner's output (truncated). */
  output: string
}

/** The planned modules of a task and, once built, their code, tests and measured quality. */
export const taskModules = pgTable(
  'task_modules',
  {
    taskId: text('task_id')
      .notNull()
      .references(() => tasks.id, { onDelete: 'cascade' }),
    position: integer('position').notNull(),
    name: text('name').notNull(),
    purpose: text('purpose').notNull().default(''),
    interface: text('interface').notNull().default(''),
    status: text('status', { enum: ['pending', 'running', 'complete'] })
      .notNull()
      .default('pending'),
    code: text('code'),
    tests: text('tests'),
    qualityScore: real('quality_score'),
    testReport: jsonb('test_report').$type<TestReport>(),
    iterations: integer('iterations').notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.taskId, t.position] })],
)
