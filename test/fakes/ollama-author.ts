// How the simulated model answers a coding task's requests when no test scripted them: it recognises a
// task plan or a module request by the `format` schema it is asked to fill (as a model reads the schema it is
// constrained to), reads the goal and the module name from the prompt, and answers with valid module names,
// working code and bun:test tests that import the module — what a capable model returns.

import { moduleNamed, modulesForGoal } from './ollama-recipes.ts'
import { spacedJson } from './ollama-schema.ts'

type Message = { role?: unknown; content?: unknown }

const isRecord = (value: unknown): value is Record<string, any> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

/** The reply content for a plan or module request, or undefined when the request is neither. */
export function authorContent(body: Record<string, any>): string | undefined {
  const properties = isRecord(body.format) ? body.format.properties : undefined
  if (!isRecord(properties)) return undefined
  const users = userTexts(body)
  if (isRecord(properties.modules) && 'estimated_iterations' in properties) {
    const modules = modulesForGoal(goalOf(users[0] ?? ''))
    return spacedJson({
      modules: modules.map(({ name, purpose, interface: iface }) => ({ name, purpose, interface: iface })),
      estimated_iterations: modules.length,
    })
  }
  if (isRecord(properties.code) && isRecord(properties.tests)) {
    // A retry after failing tests repeats the first request's goal and module; those are what count.
    const request = users.find((text) => /Write the module /.test(text)) ?? users[0] ?? ''
    const name = /Write the module ([a-z][a-z0-9_]*)\.ts/.exec(request)?.[1]
    const goal = goalOf(request.replace(/^Goal:\s*/, ''))
    const module = moduleNamed(name ?? modulesForGoal(goal)[0]?.name ?? 'program', goal)
    return spacedJson({ code: module.code, tests: module.tests })
  }
  return undefined
}

function userTexts(body: Record<string, any>): string[] {
  if (typeof body.prompt === 'string') return [body.prompt]
  const messages: Message[] = Array.isArray(body.messages) ? body.messages : []
  return messages
    .filter((m) => m?.role === 'user' && typeof m.content === 'string')
    .map((m) => String(m.content))
}

/** The goal itself: the prompt's first paragraph (answers to clarifying questions and the rest follow it). */
function goalOf(text: string): string {
  return (text.split(/\n\s*\n/)[0] ?? '').trim()
}
