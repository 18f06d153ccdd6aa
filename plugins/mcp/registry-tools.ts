/**
 * Every tool of the core registry the caller may use, offered over MCP as it is offered to Gantry's own agents:
 * a plugin dropped into plugins/ that registers a tool shows up here on the next start, with no edit anywhere.
 */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { type ZodType, z } from 'zod'
import type { Tool } from '../../src/core/tools.ts'
import { type CallExtra, guarded, type McpCall, stopSignal } from './call.ts'

/** Registry tools as zod schemas, converted once per tool object (a plugin's re-registration is a new object). */
const schemas = new WeakMap<Tool, ZodType>()

function inputSchemaOf(tool: Tool): ZodType {
  let schema = schemas.get(tool)
  if (!schema) {
    schema = z.fromJSONSchema(tool.parameters as Parameters<typeof z.fromJSONSchema>[0])
    schemas.set(tool, schema)
  }
  return schema
}

/** Roles that may use a tool: `computer` drives the shared desktop, so only VNC_ALLOWED_ROLES get it. */
function mayUse(call: McpCall, tool: Tool): boolean {
  if (tool.name === 'computer') return call.gantry.config.vncAllowedRoles.includes(call.user.role)
  return true
}

function toMcpResult(result: Awaited<ReturnType<Tool['run']>>): CallToolResult {
  return {
    content: [
      { type: 'text', text: result.content },
      ...(result.images ?? []).map((data) => ({ type: 'image' as const, data, mimeType: 'image/png' })),
    ],
    ...(result.isError ? { isError: true } : {}),
  }
}

/** Registers the registry's tools except those named in `taken` (the MCP server's own tools win). */
export function registerRegistryTools(server: McpServer, call: McpCall, taken: Set<string>): void {
  for (const tool of call.gantry.tools.list()) {
    if (taken.has(tool.name) || !mayUse(call, tool)) continue
    let inputSchema: ZodType
    try {
      inputSchema = inputSchemaOf(tool)
    } catch (err) {
      call.gantry.log.warn(
        { tool: tool.name, err: (err as Error).message },
        'mcp: tool schema not convertible',
      )
      continue
    }
    server.registerTool(
      tool.name,
      { description: tool.description, inputSchema: inputSchema as any },
      (args: Record<string, unknown>, extra: unknown) =>
        guarded(call, tool.name, async () => {
          const stop = stopSignal(call, extra as CallExtra)
          try {
            return toMcpResult(
              await tool.run(args ?? {}, { gantry: call.gantry, user: call.user, signal: stop.signal }),
            )
          } finally {
            stop.release()
          }
        }),
    )
  }
}
