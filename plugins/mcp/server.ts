/**
 * One MCP server per HTTP request (the SDK's stateless mode): whatever a call needs lives in Postgres, so the next
 * request may land on any instance. Building one is cheap: the tool schemas are made once per process.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { McpCall } from './call.ts'
import { registerChatTools } from './chat-tools.ts'
import { registerRegistryTools } from './registry-tools.ts'
import { registerTaskResources } from './resources.ts'
import { registerTaskTools } from './task-tools.ts'

const INSTRUCTIONS = `Gantry is a self-hosted agent server with a local model on the user's GPU machine.
- To have code written and tested, call start_coding_task with a plain description; it returns a task id at once
  and the task runs on the server whether or not you stay connected. Follow it with get_task, fetch the code with
  get_task_results, steer it with intervene_in_task, stop it with cancel_task. wait: true follows it to the end.
- To ask one of Gantry's agents something, call chat (list_agents shows who is there); pass back the session id
  it returns to continue the conversation.
- Tasks are also readable as resources: gantry://tasks/{id}, gantry://tasks/{id}/results, gantry://tasks/{id}/log.`

export function buildMcpServer(call: McpCall, version: string): McpServer {
  const server = new McpServer({ name: 'gantry', title: 'Gantry', version }, { instructions: INSTRUCTIONS })
  registerTaskTools(server, call)
  const chat = call.gantry.plugins.some((p) => p.name === 'sessions' && p.status === 'loaded')
  if (chat) registerChatTools(server, call)
  registerTaskResources(server, call)
  const own = ['start_coding_task', 'get_task', 'get_task_results', 'list_tasks', 'intervene_in_task']
  const taken = new Set([...own, 'cancel_task', 'chat', 'list_agents'])
  registerRegistryTools(server, call, taken)
  return server
}
