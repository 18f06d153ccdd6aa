/** Tasks as MCP resources: `gantry://tasks/{id}` (status), `…/results` and `…/log`, listed as templates. */
import { type McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { HttpError } from '../../src/core/errors.ts'
import { logLine, taskLogOf } from '../logs-stream/service.ts'
import { findTask, listTasks, taskView } from '../tasks/service.ts'
import type { McpCall } from './call.ts'
import { taskResults } from './task-tools.ts'

/** The specification's code for a resource that does not exist. */
const RESOURCE_NOT_FOUND = -32002
const MAX_LOG_EVENTS = 20_000

const idOf = (vars: Record<string, string | string[]>) => decodeURIComponent(String(vars.id))

/** Service errors as JSON-RPC errors: another user's task reads exactly like a missing one. */
async function readOrFail<T>(id: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read()
  } catch (err) {
    if (err instanceof HttpError && err.status === 404)
      throw new McpError(RESOURCE_NOT_FOUND, `No task ${id}: it does not exist or is not yours.`, { uri: id })
    throw err
  }
}

const json = (uri: URL, value: unknown) => ({
  contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify(value, null, 2) }],
})

export function registerTaskResources(server: McpServer, call: McpCall): void {
  const { gantry, user } = call
  server.registerResource(
    'task',
    new ResourceTemplate('gantry://tasks/{id}', {
      // The 20 newest of the caller's tasks; older ones are still readable by id.
      list: async () => {
        const { rows } = await listTasks(gantry, user, { limit: 20, offset: 0 })
        return {
          resources: rows.map((r) => ({
            uri: `gantry://tasks/${r.id}`,
            name: r.id,
            title: r.prompt.slice(0, 80),
            description: `${r.status}, ${r.modulesComplete}/${r.totalModules} modules`,
            mimeType: 'application/json',
          })),
        }
      },
    }),
    {
      title: 'Coding task status',
      description: 'Status, current module, iteration and progress of one of your coding tasks',
      mimeType: 'application/json',
    },
    async (uri, vars) => {
      const id = idOf(vars)
      return json(uri, taskView(await readOrFail(id, () => findTask(gantry, user, id))))
    },
  )
  server.registerResource(
    'task-results',
    new ResourceTemplate('gantry://tasks/{id}/results', { list: undefined }),
    {
      title: 'Coding task results',
      description: 'Every module of a task with its code, tests, quality score and test report',
      mimeType: 'application/json',
    },
    async (uri, vars) => {
      const id = idOf(vars)
      return json(uri, await readOrFail(id, () => taskResults(call, id)))
    },
  )
  server.registerResource(
    'task-log',
    new ResourceTemplate('gantry://tasks/{id}/log', { list: undefined }),
    {
      title: 'Coding task log',
      description: 'The log of a task, one "[LEVEL] message" line per entry, oldest first',
      mimeType: 'text/plain',
    },
    async (uri, vars) => {
      const id = idOf(vars)
      await readOrFail(id, () => findTask(gantry, user, id))
      const lines: string[] = []
      for (let after = 0, read = 0; read < MAX_LOG_EVENTS; ) {
        const page = await gantry.events.readSince(id, after, 1000)
        if (!page.length) break
        for (const e of page) {
          const log = taskLogOf(e)
          if (log) lines.push(`${log.timestamp} ${logLine(log)}`)
        }
        after = page[page.length - 1]!.seq
        read += page.length
      }
      return { contents: [{ uri: uri.href, mimeType: 'text/plain', text: lines.join('\n') }] }
    },
  )
}
