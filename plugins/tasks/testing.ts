/**
 * Test kit for the tasks plugin: scripted "model" answers for the simulated Ollama, routed by task goal so that
 * several tasks can share one mock, and helpers to read a task's events.
 */
import { symlinkSync } from 'node:fs'
import { join } from 'node:path'
import type { StoredEvent } from '../../src/core/events.ts'
import type { MockOllama, Reply, ScriptRequest } from '../../test/fakes/ollama.ts'
import { type TestServer, tempDir, waitFor } from '../../test/helpers.ts'

export const MODULES = {
  mathutil: {
    code: 'export const add = (a: number, b: number): number => a + b\n',
    buggy: 'export const add = (a: number, b: number): number => a - b\n',
    tests: [
      "import { expect, test } from 'bun:test'",
      "import { add } from './mathutil.ts'",
      "test('adds', () => expect(add(2, 3)).toBe(5))",
      "test('adds negatives', () => expect(add(-1, 1)).toBe(0))",
    ].join('\n'),
  },
  stats: {
    code: "import { add } from './mathutil.ts'\nexport const sum = (xs: number[]): number => xs.reduce(add, 0)\n",
    tests: [
      "import { expect, test } from 'bun:test'",
      "import { sum } from './stats.ts'",
      "test('sums', () => expect(sum([1, 2, 3])).toBe(6))",
      "test('empty', () => expect(sum([])).toBe(0))",
    ].join('\n'),
  },
} as const

export const planReply = (names: string[]) =>
  JSON.stringify({
    modules: names.map((name) => ({
      name,
      purpose: `the ${name} module`,
      interface: `export from ${name}.ts`,
    })),
    estimated_iterations: names.length,
  })

export const codeReply = (code: string, tests: string) => JSON.stringify({ code, tests })

export const good = (name: keyof typeof MODULES): Reply => ({
  content: codeReply(MODULES[name].code, MODULES[name].tests),
})

export interface ModelTurn {
  step: 'plan' | 'code'
  module?: string
  /** 1-based count of calls for this goal and step (and module). */
  n: number
  request: ScriptRequest
  text: string
}

export type Scenario = (turn: ModelTurn) => Reply | Promise<Reply>

const textOf = (body: any): string =>
  (body?.messages ?? []).map((m: { content?: string }) => m.content ?? '').join('\n')

/** Routes the mock's chat calls to a scenario by the task goal found in the prompt. */
export function routeByGoal(mock: MockOllama) {
  const scenarios = new Map<string, Scenario>()
  const counts = new Map<string, number>()
  mock.script(async (request) => {
    const text = textOf(request.body)
    for (const [goal, scenario] of scenarios) {
      if (!text.includes(goal)) continue
      const system = String(request.body?.messages?.[0]?.content ?? '')
      const step = system.startsWith('You plan') ? 'plan' : 'code'
      const module = step === 'code' ? /Write the module (\w+)\.ts/.exec(text)?.[1] : undefined
      const key = `${goal}|${step}|${module ?? ''}`
      const n = (counts.get(key) ?? 0) + 1
      counts.set(key, n)
      return scenario({ step, module, n, request, text })
    }
    return { error: { status: 500, message: 'no scenario for this prompt' } }
  })
  return {
    on(goal: string, scenario: Scenario) {
      scenarios.set(goal, scenario)
    },
  }
}

/** A scenario where the model plans `names` and writes good code for each. */
export const straight =
  (names: (keyof typeof MODULES)[]): Scenario =>
  ({ step, module }) =>
    step === 'plan' ? { content: planReply(names) } : good(module as keyof typeof MODULES)

export async function eventsOf(server: TestServer, taskId: string): Promise<StoredEvent[]> {
  return server.running.gantry.events.readSince(taskId, 0, 10_000)
}

export async function waitForEvent(
  server: TestServer,
  taskId: string,
  type: string | string[],
  timeoutMs = 20_000,
): Promise<StoredEvent> {
  const types = Array.isArray(type) ? type : [type]
  return waitFor<StoredEvent | undefined>(
    async () => (await eventsOf(server, taskId)).find((e) => types.includes(e.type)),
    timeoutMs,
    `${types.join('|')} on ${taskId}`,
  ) as Promise<StoredEvent>
}

/** Waits for the task's last event (complete, failed or cancelled) and returns all its events. */
export async function finished(server: TestServer, taskId: string, timeoutMs = 30_000) {
  await waitForEvent(server, taskId, ['TASK_COMPLETE', 'TASK_FAILED', 'TASK_CANCELLED'], timeoutMs)
  return eventsOf(server, taskId)
}

export const types = (events: StoredEvent[], withLogs = false) =>
  events.filter((e) => withLogs || e.type !== 'LOG').map((e) => e.type)

/**
 * A plugins folder holding only this plugin, so its tests do not depend on other plugins' state.
 * Pass it as PLUGINS_DIR.
 */
export function tasksOnlyPluginsDir(): string {
  const dir = tempDir('gantry-plugins-')
  symlinkSync(import.meta.dirname, join(dir, 'tasks'))
  return dir
}
