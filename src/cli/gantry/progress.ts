/**
 * A task's progress as its events tell it: the plan, each module's iteration, test pass rate and quality
 * score, and the current step. Both views (bars and lines) read this; `describeEvent` is the one-line text
 * of an event for the line view and the log above the bars.
 */
import { oneLine, percent, score } from './output.ts'
import type { StreamEvent } from './stream.ts'

export type ModuleState = 'pending' | 'running' | 'passed' | 'kept' | 'stopped'

export interface ModuleProgress {
  name: string
  iteration: number
  passRate: number | null
  quality: number | null
  passed: number | null
  failed: number | null
  state: ModuleState
}

export const TERMINAL_EVENTS = new Set(['TASK_COMPLETE', 'TASK_FAILED', 'TASK_CANCELLED'])

export class TaskProgress {
  goal = ''
  model = ''
  maxIterations = 0
  modules: ModuleProgress[] = []
  step = 'waiting for the server to start the task'
  finished: 'completed' | 'failed' | 'cancelled' | undefined
  reason: string | undefined
  lastSeq = 0

  module(name: string): ModuleProgress {
    let m = this.modules.find((x) => x.name === name)
    if (!m) {
      m = { name, iteration: 0, passRate: null, quality: null, passed: null, failed: null, state: 'pending' }
      this.modules.push(m)
    }
    return m
  }

  private stopRunning() {
    for (const m of this.modules) if (m.state === 'running') m.state = 'stopped'
  }

  apply(e: StreamEvent): void {
    this.lastSeq = e.seq
    const d = e.data ?? {}
    switch (e.type) {
      case 'TASK_STARTED':
        this.goal = String(d.goal ?? '')
        this.model = String(d.model ?? '')
        this.maxIterations = Number(d.max_iterations ?? 0)
        this.step = 'planning'
        break
      case 'PLANNING_COMPLETE':
        for (const name of (d.modules as string[]) ?? []) this.module(name)
        this.step = `planned ${this.modules.length} modules`
        break
      case 'MODULE_STARTED':
        this.module(d.module).state = 'running'
        this.step = `writing ${d.module}`
        break
      case 'MODULE_ITERATION': {
        const m = this.module(d.module)
        m.iteration = Number(d.iteration ?? m.iteration)
        m.passRate = d.test_pass_rate ?? null
        m.quality = d.quality_score ?? null
        m.passed = d.tests_passed ?? null
        m.failed = d.tests_failed ?? null
        break
      }
      case 'MODULE_COMPLETE': {
        const m = this.module(d.module)
        m.quality = d.quality_score ?? m.quality
        m.iteration = Number(d.iterations ?? m.iteration)
        m.state = d.tests_passed === false ? 'kept' : 'passed'
        break
      }
      case 'LOG':
        this.step = oneLine(String(d.message ?? ''))
        break
      case 'TASK_COMPLETE':
        this.finished = 'completed'
        this.step = `complete in ${d.total_time ?? '?'}`
        break
      case 'TASK_FAILED':
        this.finished = 'failed'
        this.stopRunning()
        this.reason = String(d.reason ?? '')
        this.step = `failed: ${oneLine(this.reason)}`
        break
      case 'TASK_CANCELLED':
        this.finished = 'cancelled'
        this.stopRunning()
        this.reason = String(d.reason ?? 'cancelled')
        this.step = 'cancelled'
        break
    }
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`

/** One line saying what an event means. */
export function describeEvent(e: StreamEvent): string {
  const d = e.data ?? {}
  switch (e.type) {
    case 'TASK_STARTED':
      return `task started: ${JSON.stringify(d.goal)} with ${d.model}, up to ${plural(Number(d.max_iterations), 'iteration')} per module`
    case 'PLANNING_COMPLETE':
      return `planned ${plural((d.modules ?? []).length, 'module')}: ${(d.modules ?? []).join(', ')}`
    case 'MODULE_STARTED':
      return `${d.module} (${d.index}/${d.total}) started`
    case 'MODULE_ITERATION':
      return d.tests_run === false
        ? `${d.module} iteration ${d.iteration}: written, tests not run`
        : `${d.module} iteration ${d.iteration}: tests ${percent(d.test_pass_rate)} (${d.tests_passed ?? 0} passed, ${d.tests_failed ?? 0} failed), quality ${score(d.quality_score)}`
    case 'TEST_PASSED':
      return `${d.module}: ${plural(Number(d.tests), 'test')} passed`
    case 'MODULE_COMPLETE':
      return `${d.module} complete: quality ${score(d.quality_score)} after ${plural(Number(d.iterations), 'iteration')}${d.tests_passed === false ? ' (best attempt kept, tests failing)' : ''}`
    case 'LOG':
      return `[${d.level}] ${oneLine(String(d.message ?? ''))}`
    case 'INTERVENTION_RECEIVED':
      return `guidance received: ${JSON.stringify(d.guidance)}`
    case 'INTERVENTION_NOT_APPLIED':
      return `guidance not applied${d.reason ? `: ${oneLine(String(d.reason))}` : ''}`
    case 'INTERVENTION_APPLIED':
      return `guidance applied${d.step ? ` to ${d.step}` : ''}`
    case 'TASK_COMPLETE':
      return `task complete: ${plural(Number(d.modules_generated), 'module')} in ${d.total_time}`
    case 'TASK_FAILED':
      return `task failed: ${oneLine(String(d.reason ?? ''))}`
    case 'TASK_CANCELLED':
      return `task cancelled${d.reason ? `: ${d.reason}` : ''}`
    default:
      return JSON.stringify(d)
  }
}
