import type { Gantry } from './context.ts'
import type { Principal } from './keys.ts'

/** What a tool sees when an agent calls it: never the HTTP request, always the caller. */
export interface ToolContext {
  gantry: Gantry
  user: Principal
  sessionId?: string
  /** Aborted when the generation is cancelled or the server stops. */
  signal: AbortSignal
}

export interface ToolResult {
  /** Text handed back to the model as the tool message. */
  content: string
  /** Base64 PNGs for vision models (e.g. a desktop screenshot). */
  images?: string[]
  isError?: boolean
}

/** A function the model may call; `parameters` is the JSON schema Ollama sends to the model. */
export interface Tool {
  name: string
  description: string
  parameters: { type: 'object'; properties: Record<string, unknown>; required?: string[] }
  run(args: Record<string, unknown>, ctx: ToolContext): Promise<ToolResult>
}

/** A built-in agent a plugin contributes (e.g. the desktop agent of the vnc plugin). */
export interface AgentDefinition {
  name: string
  description: string
  systemPrompt: string
  tools: string[]
  model?: string
  think?: boolean
}

/**
 * The tool registry of one Gantry: plugins register tools (and built-in agents) in onStart and remove them in
 * onStop; the sessions plugin offers them to models.
 */
export class ToolRegistry {
  private readonly tools = new Map<string, Tool>()
  private readonly agents = new Map<string, AgentDefinition>()

  register(tool: Tool): () => void {
    if (this.tools.has(tool.name)) throw new Error(`tool "${tool.name}" is already registered`)
    this.tools.set(tool.name, tool)
    return () => this.tools.delete(tool.name)
  }

  get(name: string): Tool | undefined {
    return this.tools.get(name)
  }

  list(): Tool[] {
    return [...this.tools.values()]
  }

  registerAgent(agent: AgentDefinition): () => void {
    this.agents.set(agent.name, agent)
    return () => this.agents.delete(agent.name)
  }

  listAgents(): AgentDefinition[] {
    return [...this.agents.values()]
  }
}
