import { and, eq } from 'drizzle-orm'
import type { Gantry } from '../../src/core/context.ts'
import type { Database } from '../../src/core/db.ts'
import { Conflict, NotFound, Unprocessable } from '../../src/core/errors.ts'
import { newId } from '../../src/core/keys.ts'
import { userAgents } from './schema.ts'

/** An agent as the generation sees it: a persona (system prompt), a model, tools and thinking. */
export interface Agent {
  name: string
  description: string
  systemPrompt: string
  tools: string[]
  model?: string
  think: boolean
  options: Record<string, unknown>
  source: 'builtin' | 'plugin' | 'user'
}

/** The agents every installation has; plugins add theirs through `gantry.tools.registerAgent`. */
export const BUILTIN_AGENTS: readonly Agent[] = [
  {
    name: 'assistant',
    description: 'A helpful general assistant that can look up your coding tasks.',
    systemPrompt:
      'You are Gantry, a helpful assistant running on the user’s own machine. Answer clearly and concisely.',
    tools: ['list_my_tasks'],
    think: false,
    options: {},
    source: 'builtin',
  },
  {
    name: 'researcher',
    description: 'Thinks a question through step by step and answers with sources of its reasoning.',
    systemPrompt:
      'You are a careful researcher. Reason step by step, state your assumptions, and say what you are unsure of.',
    tools: [],
    think: true,
    options: {},
    source: 'builtin',
  },
  {
    name: 'coder',
    description: 'A programming assistant that can start long-running coding tasks and report on them.',
    systemPrompt:
      'You are an expert software engineer. Write correct, idiomatic code. For a larger piece of work, start a coding task with the start_coding_task tool and tell the user its id.',
    tools: ['start_coding_task', 'list_my_tasks'],
    think: false,
    options: {},
    source: 'builtin',
  },
]

const toAgent = (row: typeof userAgents.$inferSelect): Agent => ({
  name: row.name,
  description: row.description ?? '',
  systemPrompt: row.systemPrompt,
  tools: row.tools,
  model: row.model ?? undefined,
  think: row.think,
  options: row.options,
  source: 'user',
})

/** Built-in agents, then those plugins registered (vnc's desktop agent, …); a plugin's agent never shadows ours. */
export function systemAgents(gantry: Gantry): Agent[] {
  const builtin = new Set(BUILTIN_AGENTS.map((a) => a.name))
  const fromPlugins = gantry.tools
    .listAgents()
    .filter((a) => !builtin.has(a.name))
    .map(
      (a): Agent => ({
        name: a.name,
        description: a.description,
        systemPrompt: a.systemPrompt,
        tools: a.tools,
        model: a.model,
        think: a.think ?? false,
        options: {},
        source: 'plugin',
      }),
    )
  return [...BUILTIN_AGENTS, ...fromPlugins]
}

/** Every agent the user may chat with: the system's and their own. */
export async function listAgents(gantry: Gantry, userId: string): Promise<Agent[]> {
  const own = await gantry.db.select().from(userAgents).where(eq(userAgents.userId, userId))
  return [...systemAgents(gantry), ...own.map(toAgent).sort((a, b) => a.name.localeCompare(b.name))]
}

/** The agent named `name` for this user, or a 422 that lists the valid names. */
export async function resolveAgent(gantry: Gantry, userId: string, name: string): Promise<Agent> {
  const system = systemAgents(gantry).find((a) => a.name === name)
  if (system) return system
  const [row] = await gantry.db
    .select()
    .from(userAgents)
    .where(and(eq(userAgents.userId, userId), eq(userAgents.name, name)))
  if (row) return toAgent(row)
  const valid = (await listAgents(gantry, userId)).map((a) => a.name)
  throw Unprocessable(`Unknown agent "${name}". Valid agents: ${valid.join(', ')}.`, { valid_agents: valid })
}

/** The agent, or undefined when the name is not an agent of this user (e.g. it is an Ollama model). */
export async function findAgent(gantry: Gantry, userId: string, name: string): Promise<Agent | undefined> {
  try {
    return await resolveAgent(gantry, userId, name)
  } catch {
    return undefined
  }
}

export interface AgentInput {
  name: string
  description?: string
  model?: string
  system_prompt?: string
  tools?: string[]
  think?: boolean
  options?: Record<string, unknown>
}

/** Creates a user's own agent; its name may not shadow a system agent, and its tools must exist. */
export async function createUserAgent(gantry: Gantry, userId: string, input: AgentInput): Promise<Agent> {
  if (systemAgents(gantry).some((a) => a.name === input.name))
    throw Conflict(`"${input.name}" is a built-in agent; choose another name.`)
  const known = gantry.tools.list().map((t) => t.name)
  const unknown = (input.tools ?? []).filter((t) => !known.includes(t))
  if (unknown.length)
    throw Unprocessable(
      `Unknown tool(s): ${unknown.join(', ')}. Valid tools: ${known.join(', ') || 'none'}.`,
      {
        valid_tools: known,
      },
    )
  const existing = await gantry.db
    .select({ id: userAgents.id })
    .from(userAgents)
    .where(and(eq(userAgents.userId, userId), eq(userAgents.name, input.name)))
  if (existing.length) throw Conflict(`You already have an agent named "${input.name}".`)
  const [row] = await gantry.db
    .insert(userAgents)
    .values({
      id: newId('agt', 9),
      userId,
      name: input.name,
      description: input.description ?? null,
      model: input.model ?? null,
      systemPrompt: input.system_prompt ?? '',
      tools: input.tools ?? [],
      think: input.think ?? false,
      options: input.options ?? {},
    })
    .returning()
  return toAgent(row!)
}

export async function deleteUserAgent(db: Database, userId: string, name: string): Promise<void> {
  const rows = await db
    .delete(userAgents)
    .where(and(eq(userAgents.userId, userId), eq(userAgents.name, name)))
    .returning({ id: userAgents.id })
  if (!rows.length) throw NotFound(`Agent ${name} of yours`)
}
