/**
 * One coding task, run as a job: TASK_STARTED → plan (PLANNING_COMPLETE) → per module: generate code and tests,
 * run them, feed failures back (MODULE_ITERATION… TEST_PASSED, MODULE_COMPLETE) → TASK_COMPLETE, TASK_FAILED or
 * TASK_CANCELLED. Checkpoints after planning and after each module, so a resumed run repeats no finished step.
 */
import { and, asc, eq, sql } from 'drizzle-orm'
import type { Gantry } from '../../../src/core/context.ts'
import type { StoredEvent } from '../../../src/core/events.ts'
import {
  abortReasonOf,
  type ClaimedJob,
  fenced,
  type JobContext,
  type JobOutcome,
  LeaseLostError,
  leaseHeld,
} from '../../../src/core/jobs.ts'
import type { CodeExecutor } from '../sandbox.ts'
import { SandboxUnavailable, typeCheckArgv } from '../sandbox.ts'
import { type TestReport, taskModules, tasks } from '../schema.ts'
import { Guidance } from './guidance.ts'
import { DEFAULT_RETRY, type RetryPolicy, TaskFailure, TaskModel } from './ollama.ts'
import {
  CODE_SCHEMA,
  correction,
  type GeneratedModule,
  MalformedReply,
  moduleMessages,
  PLAN_SCHEMA,
  type Plan,
  type PlannedModule,
  parseModule,
  parsePlan,
  planMessages,
} from './prompts.ts'
import { isGreen, qualityScore, testReport } from './quality.ts'

export interface TaskPayload {
  prompt: string
  answers: string[]
  model: string
  maxIterations: number
}

export interface TaskCheckpoint {
  started: boolean
  plan?: Plan
  completed: string[]
}

export interface WorkflowDeps {
  gantry: Gantry
  /** Undefined with CODE_EXECUTION=off (tests are skipped) or when `executionProblem` says why not. */
  executor?: CodeExecutor
  executionProblem?: string
  retry?: RetryPolicy
  /** Malformed model replies tolerated per step before the task fails. */
  maxMalformed?: number
}

const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}…` : s)

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000)
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`
}

/** The job handler of a coding task. */
export async function runTask(
  deps: WorkflowDeps,
  job: ClaimedJob<TaskPayload, TaskCheckpoint>,
  ctx: JobContext<TaskCheckpoint>,
): Promise<JobOutcome> {
  const { gantry } = deps
  const { events } = gantry
  const taskId = job.id
  const p = job.payload
  // Every write carries this attempt's fence: once another attempt holds the task, none of them commits.
  const emit = (type: string, data: unknown) => events.append(taskId, type, data, { fence: ctx.fence })
  const log = (level: 'INFO' | 'WARN' | 'ERROR', message: string) => emit('LOG', { level, message })
  // One statement each (the lease check is a sub-select): a client that sees the terminal event and asks for the
  // task finds the row updated a round trip later, not a transaction later.
  const setTask = async (values: Partial<typeof tasks.$inferInsert>) => {
    const written = await gantry.db
      .update(tasks)
      .set(values)
      .where(and(eq(tasks.id, taskId), leaseHeld(ctx.fence)))
      .returning({ id: tasks.id })
    if (!written.length) fenced(ctx.fence)
  }
  const setModule = async (index: number, values: Partial<typeof taskModules.$inferInsert>) => {
    const written = await gantry.db
      .update(taskModules)
      .set(values)
      .where(and(eq(taskModules.taskId, taskId), eq(taskModules.position, index), leaseHeld(ctx.fence)))
      .returning({ id: taskModules.taskId })
    if (!written.length) fenced(ctx.fence)
  }
  let currentModule: string | null = null
  const guidance = new Guidance(gantry, taskId, ctx.fence)
  /**
   * Answers unapplied guidance, then writes the terminal event and the row. Guidance that slipped in before
   * the terminal event is answered too, before the stream closes; what comes after it, the route answers.
   */
  const end = async (
    why: string,
    terminal: () => Promise<StoredEvent>,
    values: Partial<typeof tasks.$inferInsert>,
  ) => {
    await guidance.notApplied(why)
    const last = await terminal()
    await setTask(values)
    await guidance.notApplied(why, last.seq)
    await events.finishStream(taskId)
  }

  try {
    const cp: TaskCheckpoint = job.checkpoint ?? { started: false, completed: [] }
    await ctx.fenced((tx) =>
      tx
        .update(tasks)
        .set({ status: 'running', startedAt: sql`coalesce(${tasks.startedAt}, now())` })
        .where(eq(tasks.id, taskId)),
    )
    if (!cp.started) {
      await emit('TASK_STARTED', { goal: p.prompt, model: p.model, max_iterations: p.maxIterations })
      await log('INFO', 'Task started')
      cp.started = true
      await ctx.checkpoint(cp)
    } else
      await log(
        'INFO',
        `Task resumed (run ${job.attempts}) from its checkpoint: ${cp.plan ? `${cp.completed.length} of ${cp.plan.modules.length} modules done` : 'planning again'}`,
      )
    if (deps.executionProblem) throw new TaskFailure(deps.executionProblem)

    const model = new TaskModel(gantry.config.ollamaHost, ctx.signal, deps.retry ?? DEFAULT_RETRY, (m) => {
      void log('WARN', m).catch(() => {})
    })
    const maxMalformed = deps.maxMalformed ?? 3

    /** Asks until the reply parses, feeding each problem back; fails the task after `maxMalformed` tries. */
    const ask = async <T>(
      step: string,
      format: object,
      build: (guidance: string[]) => ReturnType<typeof planMessages>,
      parse: (reply: string) => T,
    ): Promise<T> => {
      const corrections: ReturnType<typeof correction> = []
      let last: MalformedReply | undefined
      for (let attempt = 1; attempt <= maxMalformed; attempt++) {
        const inEffect = await guidance.beforeModelCall(step)
        const messages = [...build(inEffect), ...corrections]
        const reply = await model.complete({ model: p.model, messages, format, step })
        try {
          return parse(reply)
        } catch (err) {
          if (!(err instanceof MalformedReply)) throw err
          last = err
          corrections.push(...correction(err))
          await log('WARN', `${step}: unusable reply (attempt ${attempt}/${maxMalformed}): ${err.message}`)
        }
      }
      throw new TaskFailure(
        `The model gave no usable ${step} reply in ${maxMalformed} attempts. Last problem: ${last!.message} It returned: ${JSON.stringify(clip(last!.reply, 500))}`,
      )
    }
    const promptContext = (g: string[]) => ({ goal: p.prompt, answers: p.answers, guidance: g })

    let plan = cp.plan
    if (!plan) {
      await log('INFO', `Planning with ${p.model}`)
      plan = await ask('planning', PLAN_SCHEMA, (g) => planMessages(promptContext(g)), parsePlan)
      const planned = plan
      await ctx.fenced(async (tx) => {
        await tx.delete(taskModules).where(eq(taskModules.taskId, taskId))
        await tx.insert(taskModules).values(
          planned.modules.map((m, position) => ({
            taskId,
            position,
            name: m.name,
            purpose: m.purpose,
            interface: m.interface,
          })),
        )
        await tx.update(tasks).set({ totalModules: planned.modules.length }).where(eq(tasks.id, taskId))
      })
      await emit('PLANNING_COMPLETE', {
        modules: plan.modules.map((m) => `${m.name}.ts`),
        plan: plan.modules,
        estimated_iterations: plan.estimated_iterations,
      })
      await log('INFO', `Planning complete: ${plan.modules.map((m) => `${m.name}.ts`).join(', ')}`)
      cp.plan = plan
      await ctx.checkpoint(cp)
    }

    const rows = await gantry.db
      .select()
      .from(taskModules)
      .where(eq(taskModules.taskId, taskId))
      .orderBy(asc(taskModules.position))
    const done = rows
      .filter((r) => r.status === 'complete' && r.code !== null)
      .map((r) => ({ name: r.name, code: r.code! }))
    for (const name of done.map((d) => d.name)) if (!cp.completed.includes(name)) cp.completed.push(name)

    for (const [index, module] of plan.modules.entries()) {
      if (cp.completed.includes(module.name)) continue
      currentModule = module.name
      await setTask({ currentModule: module.name, iteration: 0 })
      await setModule(index, { status: 'running' })
      await emit('MODULE_STARTED', {
        module: `${module.name}.ts`,
        index: index + 1,
        total: plan.modules.length,
      })
      await log('INFO', `Generating ${module.name}.ts...`)

      const built = await buildModule(module, plan)
      await setModule(index, {
        status: 'complete',
        code: built.code,
        tests: built.tests,
        qualityScore: built.quality,
        testReport: built.report,
        iterations: built.iterations,
      })
      done.push({ name: module.name, code: built.code })
      cp.completed.push(module.name)
      await setTask({ modulesComplete: cp.completed.length })
      await emit('MODULE_COMPLETE', {
        module: `${module.name}.ts`,
        quality_score: built.quality,
        iterations: built.iterations,
        tests_passed: built.report ? isGreen(built.report) : null,
      })
      await ctx.checkpoint(cp)
    }

    const [row] = await gantry.db
      .select({ startedAt: tasks.startedAt })
      .from(tasks)
      .where(eq(tasks.id, taskId))
    const totalMs = Date.now() - (row?.startedAt?.getTime() ?? Date.now())
    // The log line first: the terminal event is the stream's last. The row last: whoever sees the status
    // finished finds the terminal event already in the log.
    await log('INFO', `Task complete: ${plan.modules.length} modules in ${formatDuration(totalMs)}`)
    await end(
      'The task completed before another model call could use it.',
      () =>
        emit('TASK_COMPLETE', {
          total_time: formatDuration(totalMs),
          total_time_ms: totalMs,
          modules_generated: plan.modules.length,
        }),
      { status: 'completed', finishedAt: new Date(), currentModule: null },
    )
    return { status: 'succeeded' }

    async function buildModule(module: PlannedModule, plan: Plan) {
      let previous: { code: string; tests: string; failures: string } | undefined
      let best:
        | {
            code: string
            tests: string
            quality: number | null
            report: TestReport | null
            iterations: number
          }
        | undefined
      for (let iteration = 1; iteration <= p.maxIterations; iteration++) {
        await setTask({ iteration })
        const gen: GeneratedModule = await ask(
          `module ${module.name}`,
          CODE_SCHEMA,
          (g) => moduleMessages(promptContext(g), plan, module, done, previous),
          (reply) => parseModule(reply, module.name),
        )
        if (!deps.executor) {
          await emit('MODULE_ITERATION', {
            module: `${module.name}.ts`,
            iteration,
            test_pass_rate: null,
            quality_score: null,
            tests_run: false,
          })
          await log('INFO', `${module.name}.ts written; tests not run (CODE_EXECUTION=off)`)
          return { ...gen, quality: null, report: null, iterations: iteration }
        }
        await log('INFO', `Testing ${module.name}.ts (iteration ${iteration})`)
        const codeFiles: Record<string, string> = {}
        for (const d of done) codeFiles[`${d.name}.ts`] = d.code
        codeFiles[`${module.name}.ts`] = gen.code
        const [run, types] = await Promise.all([
          deps.executor.run(
            { ...codeFiles, [`${module.name}.test.ts`]: gen.tests },
            ['bun', 'test', `./${module.name}.test.ts`],
            ctx.signal,
          ),
          deps.executor.canTypeCheck
            ? deps.executor.run(codeFiles, typeCheckArgv([`${module.name}.ts`]), ctx.signal)
            : undefined,
        ]).catch((err) => {
          // A sandbox that cannot start fails the task with that reason, never as the code's failing tests.
          throw err instanceof SandboxUnavailable ? new TaskFailure(err.message) : err
        })
        ctx.signal.throwIfAborted()
        const report = testReport(run, types ? types.exitCode === 0 : null)
        const quality = qualityScore(report)
        await emit('MODULE_ITERATION', {
          module: `${module.name}.ts`,
          iteration,
          test_pass_rate: Math.round(report.pass_rate * 100) / 100,
          quality_score: quality,
          tests_passed: report.passed,
          tests_failed: report.failed,
          type_check: report.type_check,
        })
        if (!best || (best.quality ?? -1) < quality) best = { ...gen, quality, report, iterations: iteration }
        best.iterations = iteration
        if (isGreen(report)) {
          await emit('TEST_PASSED', { module: `${module.name}.ts`, iteration, tests: report.passed })
          await log('INFO', `${module.name}.ts: ${report.passed} tests passed (quality ${quality})`)
          return best
        }
        await log(
          'WARN',
          `${module.name}.ts: ${report.failed} of ${report.passed + report.failed} tests failing${report.timed_out ? ' (stopped by the time limit)' : ''}${iteration < p.maxIterations ? '; iterating' : ''}`,
        )
        previous = {
          code: gen.code,
          tests: gen.tests,
          failures: clip(
            `Test output:\n${report.output.slice(-4000)}${types && types.exitCode !== 0 ? `\n\nType errors (tsc --strict):\n${types.output.slice(0, 2000)}` : ''}`,
            6500,
          ),
        }
      }
      await log(
        'WARN',
        `${module.name}.ts: still failing after ${p.maxIterations} iterations; keeping the best`,
      )
      return best!
    }
  } catch (err) {
    const reason = abortReasonOf(ctx.signal)
    if (reason === 'lease_lost' || err instanceof LeaseLostError) return { status: 'released' }
    if (reason === 'shutdown') {
      await log('WARN', 'Server stopping: task paused; it resumes from its last checkpoint').catch(() => {})
      return { status: 'released' }
    }
    if (reason === 'cancelled') {
      await log('INFO', 'Task cancelled')
      await end(
        'The task was cancelled before another model call could use it.',
        () => emit('TASK_CANCELLED', { reason: 'cancelled on request', module: currentModule }),
        { status: 'cancelled', finishedAt: new Date(), currentModule: null },
      )
      return { status: 'cancelled' }
    }
    const failure =
      err instanceof TaskFailure ? err.reason : `Internal error: ${(err as Error)?.message ?? err}`
    if (!(err instanceof TaskFailure))
      gantry.log.error({ err, task: taskId, stream: taskId }, 'task failed unexpectedly')
    await log('ERROR', `Task failed: ${failure}`)
    await end(
      'The task failed before another model call could use it.',
      () => emit('TASK_FAILED', { reason: failure, module: currentModule }),
      { status: 'failed', finishedAt: new Date(), error: failure, currentModule: null },
    )
    return { status: 'failed', error: failure }
  }
}
