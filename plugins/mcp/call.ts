/** What every MCP tool sees of the HTTP request it answers: the caller, the public URLs, the cancel board. */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import type { Principal } from '../../src/core/auth.ts'
import type { Gantry } from '../../src/core/context.ts'
import { isDatabaseUnavailable } from '../../src/core/db.ts'
import { HttpError } from '../../src/core/errors.ts'
import { type CancelBoard, callKey } from './cancel.ts'

export interface McpCall {
  gantry: Gantry
  user: Principal
  /** `https://gantry.lan` and `wss://gantry.lan` as the client reached us (through nginx too). */
  origin: { http: string; ws: string }
  /** The Mcp-Session-Id the client sent back: a correlation id for cancellation, not server state. */
  session: string | undefined
  board: CancelBoard
  requestId: string
}

/** The part of the SDK's per-request `extra` the tools use. */
export interface CallExtra {
  signal: AbortSignal
  requestId: string | number
  _meta?: { progressToken?: string | number }
  sendNotification: (notification: any) => Promise<void>
}

export const text = (value: unknown): CallToolResult => ({
  content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) }],
})

export const toolError = (message: string): CallToolResult => ({
  content: [{ type: 'text', text: message }],
  isError: true,
})

/**
 * Aborts when the client cancels this call (on any instance) or disconnects, or the server stops.
 * The caller must `release` it when the call ends.
 */
export function stopSignal(call: McpCall, extra: CallExtra): { signal: AbortSignal; release(): void } {
  const watched = call.board.watch(callKey(call.user.userId, call.session, extra.requestId))
  return { signal: AbortSignal.any([extra.signal, watched.signal]), release: watched.release }
}

/**
 * Runs a tool body and turns what the services throw into an `isError` result a model can act on: another
 * user's task reads "No task …", a finished one "Task … is already completed", a bad value names the field.
 */
export async function guarded(
  call: McpCall,
  what: string,
  body: () => Promise<CallToolResult>,
): Promise<CallToolResult> {
  try {
    return await body()
  } catch (err) {
    if (err instanceof HttpError) {
      const task = /^Task (\S+) not found$/.exec(err.message)
      if (task) return toolError(`No task ${task[1]}: it does not exist or is not yours.`)
      return toolError(err.message)
    }
    if (isDatabaseUnavailable(err))
      return toolError('The database is not reachable right now; retry shortly.')
    call.gantry.log.error({ err, reqId: call.requestId, tool: what }, 'mcp tool failed')
    return toolError(`${what} failed on the server. Quote request id ${call.requestId} when reporting it.`)
  }
}
