// The simulated model's unscripted answers to Gantry's own task prompts: plans Gantry accepts, and modules
// whose tests really pass under `bun test` — for goals it has a recipe for and for any other goal.
import { afterAll, describe, expect, test } from 'bun:test'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Ollama } from 'ollama'
import {
  CODE_SCHEMA,
  moduleMessages,
  PLAN_SCHEMA,
  parseModule,
  parsePlan,
  planMessages,
} from '../../plugins/tasks/workflow/prompts.ts'
import { tempDir } from '../helpers.ts'
import { startMockOllama } from './ollama.ts'

const mock = await startMockOllama()
const client = new Ollama({ host: mock.url })
afterAll(() => mock.stop())

const ask = async (messages: Awaited<ReturnType<typeof planMessages>>, format: object) =>
  (await client.chat({ model: 'llama3.2', messages, format, stream: false })).message.content

async function runTask(goal: string) {
  const ctx = { goal, answers: ['No dependencies'], guidance: [] }
  const plan = parsePlan(await ask(planMessages(ctx), PLAN_SCHEMA))
  const dir = tempDir('gantry-author-')
  const modules = []
  for (const module of plan.modules) {
    const generated = parseModule(await ask(moduleMessages(ctx, plan, module, []), CODE_SCHEMA), module.name)
    writeFileSync(join(dir, `${module.name}.ts`), generated.code)
    writeFileSync(join(dir, `${module.name}.test.ts`), generated.tests)
    modules.push({ name: module.name, ...generated })
  }
  const run = Bun.spawnSync([process.execPath, 'test'], { cwd: dir, stdout: 'pipe', stderr: 'pipe' })
  return { plan, modules, code: run.exitCode, output: run.stderr.toString() }
}

describe('unscripted answers to task prompts', () => {
  test('the README goal: an email validator and a normalizer, whose tests pass', async () => {
    const { plan, modules, code, output } = await runTask('Build an email validator')
    expect(plan.modules.map((m) => m.name)).toEqual(['validator', 'normalize'])
    expect(modules[0]?.tests).toContain("from './validator.ts'")
    expect(output).toContain(' 0 fail')
    expect(code).toBe(0)
  })

  test.each([
    ['Write a CSV parser for quoted fields', 'csv_parser_quoted'],
    ['Build a todo list', 'todo_list'],
    ['Make a URL slug generator', 'slugify'],
    ['Check palindromes', 'palindrome'],
    ['FizzBuzz up to 100', 'fizzbuzz'],
    ['42?', 'program'],
  ])('%p is planned as %p, and its tests pass', async (goal, name) => {
    const { plan, code, output } = await runTask(goal)
    expect(plan.modules.map((m) => m.name)).toEqual([name])
    expect(output).toMatch(/ [1-9]\d* pass/)
    expect(code).toBe(0)
  })

  test('a retry after failing tests answers for the same module', async () => {
    const ctx = { goal: 'Build an email validator', answers: [], guidance: ['Follow RFC 5322'] }
    const plan = parsePlan(await ask(planMessages(ctx), PLAN_SCHEMA))
    const normalize = plan.modules[1]!
    const failures = { code: 'x', tests: 'y', failures: 'validator.test.ts: 1 fail' }
    const retry = await ask(moduleMessages(ctx, plan, normalize, [], failures), CODE_SCHEMA)
    expect(parseModule(retry, 'normalize').code).toContain('export function normalizeEmail')
  })

  test('other schemas still get schema-conformant sample JSON', async () => {
    const format = { type: 'object', properties: { code: { type: 'integer' } }, required: ['code'] }
    const reply = await client.chat({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'a number' }],
      format,
      stream: false,
    })
    expect(JSON.parse(reply.message.content)).toEqual({ code: 1 })
  })
})
