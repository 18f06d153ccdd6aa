/**
 * The quality score, computed only from what was measured — never asked of the model:
 *
 *   quality = 0.8 × test_pass_rate + 0.2 × type_check      (type_check: 1 when `tsc --strict` is clean, else 0)
 *
 * where test_pass_rate = passed / (passed + failed) of the module's own bun:test run (0 when no test ran, the
 * run crashed or was stopped by a limit). Without a type checker the score is the pass rate alone; with
 * CODE_EXECUTION=off nothing is measured and the score is null. Rounded to two decimals.
 */

import type { ExecResult } from '../sandbox.ts'
import type { TestReport } from '../schema.ts'

const REPORT_TAIL = 8000

/** Counts from bun's test summary (" 3 pass", " 1 fail"). */
export function parseBunTestOutput(output: string): { passed: number; failed: number } {
  const passed = /^\s*(\d+) pass\s*$/m.exec(output)
  const failed = /^\s*(\d+) fail\s*$/m.exec(output)
  return { passed: passed ? Number(passed[1]) : 0, failed: failed ? Number(failed[1]) : 0 }
}

export function testReport(run: ExecResult, typeCheck: boolean | null): TestReport {
  let { passed, failed } = parseBunTestOutput(run.output)
  // Exit code 0 with no summary cannot happen for bun test; a crash or a kill counts as a failure.
  if (run.exitCode !== 0 && failed === 0) failed = 1
  const total = passed + failed
  const stopped = run.timedOut
    ? `\n[stopped: the run exceeded its wall-clock limit after ${run.durationMs} ms]`
    : run.exitCode === null && !run.cancelled
      ? '\n[stopped: killed by a resource limit]'
      : ''
  const output = run.output + stopped
  return {
    passed,
    failed,
    pass_rate: total ? passed / total : 0,
    type_check: typeCheck,
    timed_out: run.timedOut,
    output: output.length > REPORT_TAIL ? `…${output.slice(-REPORT_TAIL)}` : output,
  }
}

export function qualityScore(report: TestReport): number {
  const score =
    report.type_check === null ? report.pass_rate : 0.8 * report.pass_rate + 0.2 * Number(report.type_check)
  return Math.round(score * 100) / 100
}

/** Green: every test passed and there was at least one. */
export const isGreen = (r: TestReport) => r.passed > 0 && r.failed === 0
