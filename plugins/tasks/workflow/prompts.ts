/**
 * What the workflow asks the model, the JSON schemas its answers must follow (Ollama `format`), and the
 * checks that turn an untrusted reply into a plan or a module — or into an error message fed back to it.
 */
import type { Message } from 'ollama'

export interface PlannedModule {
  name: string
  purpose: string
  interface: string
}

export interface Plan {
  modules: PlannedModule[]
  estimated_iterations: number
}

export interface GeneratedModule {
  code: string
  tests: string
}

export const MAX_MODULES = 8

export const PLAN_SCHEMA = {
  type: 'object',
  properties: {
    modules: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_MODULES,
      items: {
        type: 'object',
        properties: {
          name: { type: 'string', description: 'file name without extension, e.g. validator' },
          purpose: { type: 'string' },
          interface: { type: 'string', description: 'the exported TypeScript signatures' },
        },
        required: ['name', 'purpose', 'interface'],
      },
    },
    estimated_iterations: { type: 'integer' },
  },
  required: ['modules', 'estimated_iterations'],
} as const

export const CODE_SCHEMA = {
  type: 'object',
  properties: {
    code: { type: 'string', description: 'the TypeScript module' },
    tests: { type: 'string', description: 'bun:test tests for it' },
  },
  required: ['code', 'tests'],
} as const

/** A model reply that cannot be used; `message` is fed back to the model on the next attempt. */
export class MalformedReply extends Error {
  constructor(
    message: string,
    readonly reply: string,
  ) {
    super(message)
    this.name = 'MalformedReply'
  }
}

const NAME = /^[a-z][a-z0-9_]{0,39}$/

function parseJsonObject(reply: string): Record<string, unknown> {
  const text = reply
    .trim()
    .replace(/^```(?:json)?\s*/i, '')
    .replace(/```\s*$/, '')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new MalformedReply(`Your reply was not valid JSON (${(err as Error).message}).`, reply)
  }
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw new MalformedReply('Your reply must be one JSON object.', reply)
  return value as Record<string, unknown>
}

/** Turns a planning reply into a plan, or throws MalformedReply saying what is wrong with it. */
export function parsePlan(reply: string): Plan {
  const obj = parseJsonObject(reply)
  const modules = obj.modules
  if (!Array.isArray(modules) || modules.length === 0)
    throw new MalformedReply('"modules" must be a non-empty array.', reply)
  if (modules.length > MAX_MODULES)
    throw new MalformedReply(`Plan at most ${MAX_MODULES} modules (you gave ${modules.length}).`, reply)
  const seen = new Set<string>()
  const planned = modules.map((m, i) => {
    if (!m || typeof m !== 'object') throw new MalformedReply(`modules[${i}] must be an object.`, reply)
    const { name, purpose, interface: iface } = m as Record<string, unknown>
    if (typeof name !== 'string') throw new MalformedReply(`modules[${i}].name must be a string.`, reply)
    const base = name.trim().replace(/\.(ts|js|py|tsx)$/i, '')
    if (!NAME.test(base))
      throw new MalformedReply(
        `modules[${i}].name "${name}" must be a lower-case file name without extension (letters, digits, _), e.g. "validator".`,
        reply,
      )
    if (seen.has(base)) throw new MalformedReply(`Module name "${base}" appears twice.`, reply)
    seen.add(base)
    if (typeof purpose !== 'string' || !purpose.trim())
      throw new MalformedReply(`modules[${i}].purpose must be a non-empty string.`, reply)
    return { name: base, purpose: purpose.trim(), interface: typeof iface === 'string' ? iface.trim() : '' }
  })
  const est = Number(obj.estimated_iterations)
  return {
    modules: planned,
    estimated_iterations: Number.isInteger(est) && est > 0 && est < 1000 ? est : planned.length,
  }
}

const stripFence = (s: string) =>
  s
    .trim()
    .replace(/^```[a-z]*\s*\n/i, '')
    .replace(/\n?```\s*$/, '')

/** Turns a code reply into module code and tests, or throws MalformedReply. */
export function parseModule(reply: string, moduleName: string): GeneratedModule {
  const obj = parseJsonObject(reply)
  const code = typeof obj.code === 'string' ? stripFence(obj.code) : ''
  const tests = typeof obj.tests === 'string' ? stripFence(obj.tests) : ''
  if (!code) throw new MalformedReply('Your reply has no "code": put the whole module in it.', reply)
  if (!tests) throw new MalformedReply('Your reply has no "tests": write bun:test tests.', reply)
  if (!tests.includes('bun:test'))
    throw new MalformedReply(
      `"tests" must import from 'bun:test' (import { test, expect } from 'bun:test') and import the module from './${moduleName}.ts'.`,
      reply,
    )
  return { code, tests }
}

export interface PromptContext {
  goal: string
  answers: string[]
  guidance: string[]
}

function systemPrompt(role: string, ctx: PromptContext): string {
  const lines = [role]
  if (ctx.guidance.length)
    lines.push(
      '',
      'The person supervising this task gave this guidance; it overrides earlier choices:',
      ...ctx.guidance.map((g) => `- ${g}`),
    )
  return lines.join('\n')
}

function goalText(ctx: PromptContext): string {
  const answers = ctx.answers.filter((a) => a.trim())
  return answers.length
    ? `${ctx.goal}\n\nAnswers to clarifying questions:\n${answers.map((a) => `- ${a}`).join('\n')}`
    : ctx.goal
}

export function planMessages(ctx: PromptContext): Message[] {
  return [
    {
      role: 'system',
      content: systemPrompt(
        `You plan small TypeScript programs for Bun. Split the goal into 1 to ${MAX_MODULES} modules, each one file. Answer with JSON only: {"modules":[{"name","purpose","interface"}],"estimated_iterations"}. Names are lower-case file names without extension.`,
        ctx,
      ),
    },
    { role: 'user', content: goalText(ctx) },
  ]
}

export function moduleMessages(
  ctx: PromptContext,
  plan: Plan,
  module: PlannedModule,
  done: { name: string; code: string }[],
  previous?: { code: string; tests: string; failures: string },
): Message[] {
  const others = plan.modules
    .filter((m) => m.name !== module.name)
    .map((m) => `- ${m.name}.ts: ${m.purpose}${m.interface ? ` (${m.interface})` : ''}`)
  const user = [
    `Goal: ${goalText(ctx)}`,
    '',
    `Write the module ${module.name}.ts: ${module.purpose}`,
    module.interface ? `Interface: ${module.interface}` : '',
    others.length ? `Other modules of the program:\n${others.join('\n')}` : '',
    done.length
      ? `Finished modules you may import (import from './<name>.ts'):\n${done.map((d) => `--- ${d.name}.ts\n${d.code}`).join('\n')}`
      : '',
    `Answer with JSON only: {"code": the module, "tests": bun:test tests importing from './${module.name}.ts'}.`,
  ].filter(Boolean)
  const messages: Message[] = [
    {
      role: 'system',
      content: systemPrompt(
        'You write correct, strict TypeScript for Bun with thorough bun:test tests. No external packages.',
        ctx,
      ),
    },
    { role: 'user', content: user.join('\n') },
  ]
  if (previous)
    messages.push(
      { role: 'assistant', content: JSON.stringify({ code: previous.code, tests: previous.tests }) },
      {
        role: 'user',
        content: `The tests did not pass. Fix the code (or a wrong test) and answer with the whole JSON again.\n\n${previous.failures}`,
      },
    )
  return messages
}

/** The follow-up after a malformed reply: what was wrong, and a reminder of the format. */
export function correction(err: MalformedReply): Message[] {
  return [
    { role: 'assistant', content: err.reply.slice(0, 4000) },
    { role: 'user', content: `${err.message} Answer again with the JSON object only.` },
  ]
}
