/**
 * Following a task through its event log for `start_coding_task {wait: true}`: one progress step per event, in
 * seq order, from whichever instance runs the task (the log's live subscription spans instances).
 */
import type { Gantry } from '../../src/core/context.ts'
import type { StoredEvent } from '../../src/core/events.ts'

export interface TaskStep {
  /** Modules done, plus a creeping fraction within the current one: every step is larger than the last. */
  progress: number
  /** Modules planned; undefined until planning is complete. */
  total?: number
  message: string
}

export type FollowOutcome = 'finished' | 'stopped' | 'timed_out' | 'deleted'

const TERMINAL = new Set(['TASK_COMPLETE', 'TASK_FAILED', 'TASK_CANCELLED'])

const pct = (rate: unknown) => (typeof rate === 'number' ? `${Math.round(rate * 100)}%` : '?')

/** A person-readable line for one task event, or undefined for events that are not a step (LOG lines). */
export function stepMessage(e: StoredEvent): string | undefined {
  const d = (e.data ?? {}) as Record<string, any>
  switch (e.type) {
    case 'TASK_STARTED':
      return `Task started with ${d.model ?? 'the default model'}`
    case 'PLANNING_COMPLETE':
      return `Planned ${(d.modules ?? []).length} modules: ${(d.modules ?? []).join(', ')}`
    case 'MODULE_STARTED':
      return `Writing ${d.module} (module ${d.index} of ${d.total})`
    case 'MODULE_ITERATION':
      return d.tests_run === false
        ? `${d.module} written (iteration ${d.iteration}); tests not run`
        : `${d.module} iteration ${d.iteration}: tests ${pct(d.test_pass_rate)} passing`
    case 'TEST_PASSED':
      return `${d.module}: ${d.tests} tests passed`
    case 'MODULE_COMPLETE':
      return `${d.module} complete${typeof d.quality_score === 'number' ? ` (quality ${d.quality_score})` : ''}`
    case 'INTERVENTION_RECEIVED':
      return 'Guidance received'
    case 'INTERVENTION_APPLIED':
      return `Guidance applied (${d.step ?? 'next step'})`
    case 'TASK_COMPLETE':
      return `Task complete in ${d.total_time ?? '?'}`
    case 'TASK_FAILED':
      return `Task failed: ${d.reason ?? 'unknown reason'}`
    case 'TASK_CANCELLED':
      return 'Task cancelled'
    default:
      return undefined
  }
}

/**
 * Calls `onStep` for each step of the task, in order, until the task ends, `signal` aborts or `maxMs` passes.
 * Steps already in the log are replayed first, so a late follower still sees the whole story.
 */
export function followTask(
  gantry: Gantry,
  taskId: string,
  signal: AbortSignal,
  onStep: (step: TaskStep) => Promise<void>,
  maxMs: number,
): Promise<FollowOutcome> {
  return new Promise<FollowOutcome>((resolve) => {
    const done = new Set<string>()
    let total: number | undefined
    let sinceDone = 0
    let last = -1
    let chain = Promise.resolve()
    let settled = false
    const finish = (outcome: FollowOutcome) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      sub.close()
      // Steps already queued are still sent, so the last notification precedes the result.
      void chain.then(() => resolve(outcome))
    }
    const onAbort = () => finish('stopped')
    const timer = setTimeout(() => finish('timed_out'), maxMs)
    const sub = gantry.events.subscribe(
      taskId,
      0,
      (e) => {
        if (settled) return
        const message = stepMessage(e)
        if (!message) return
        const d = (e.data ?? {}) as Record<string, any>
        if (e.type === 'PLANNING_COMPLETE') total = (d.modules ?? []).length
        let progress: number
        if (e.type === 'MODULE_COMPLETE' && !done.has(String(d.module))) {
          done.add(String(d.module))
          sinceDone = 1
          progress = done.size
        } else if (TERMINAL.has(e.type) && total !== undefined && done.size === total) {
          progress = total
        } else {
          // The specification wants every notification's progress above the last: creep towards the next module.
          progress = done.size + sinceDone / (sinceDone + 1)
          sinceDone++
        }
        // A task that completed every module has said so already at progress = total; the result follows.
        if (progress > last) {
          last = progress
          const step = { progress, total, message }
          chain = chain.then(() => (signal.aborted ? undefined : onStep(step).catch(() => {})))
        }
        // The row says "completed" only after the terminal event, and the stream ends after the row: wait for
        // the end (briefly: an instance that died in between leaves the end to its successor).
        if (TERMINAL.has(e.type)) setTimeout(() => finish('finished'), 10_000).unref?.()
      },
      { onEnd: (reason) => finish(reason === 'deleted' ? 'deleted' : 'finished') },
    )
    if (signal.aborted) finish('stopped')
    else signal.addEventListener('abort', onAbort, { once: true })
  })
}
