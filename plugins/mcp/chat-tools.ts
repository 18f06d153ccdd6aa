/** `chat` and `list_agents`: a conversation with one of Gantry's agents, kept in a session's history. */
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { eq } from 'drizzle-orm'
import { z } from 'zod'
import type { Gantry } from '../../src/core/context.ts'
import { listAgents } from '../sessions/agents.ts'
import { startChat } from '../sessions/chat.ts'
import { chatMessages } from '../sessions/schema.ts'
import { createSession, getOrCreateSession, type MessageRow } from '../sessions/service.ts'
import { type CallExtra, guarded, type McpCall, stopSignal, text, toolError } from './call.ts'

/** How long a chat call waits for the answer before saying where to find it. */
const MAX_ANSWER_MS = 10 * 60_000
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n)}…` : s)

/** Resolves when the generation that started after `since` on the session ends, the signal aborts or time runs out. */
function answerEnded(
  gantry: Gantry,
  sessionId: string,
  since: number,
  signal: AbortSignal,
): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false
    const finish = (ended: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      sub.close()
      resolve(ended)
    }
    const onAbort = () => finish(false)
    const timer = setTimeout(() => finish(false), MAX_ANSWER_MS)
    const sub = gantry.events.subscribe(sessionId, since, (e) => {
      if (e.type === 'response' || e.type === 'error') finish(true)
    })
    if (signal.aborted) finish(false)
    else signal.addEventListener('abort', onAbort, { once: true })
  })
}

/** The stored answer; the runner writes the row just after the end event, so it may take a moment to appear. */
async function storedAnswer(gantry: Gantry, messageId: string): Promise<MessageRow | undefined> {
  for (let i = 0; i < 100; i++) {
    const [row] = await gantry.db.select().from(chatMessages).where(eq(chatMessages.id, messageId))
    if (row && row.status !== 'pending' && row.status !== 'streaming') return row
    await new Promise((r) => setTimeout(r, 50))
  }
  return undefined
}

function summarizeTools(row: MessageRow): string[] {
  return (row.toolCalls ?? []).map((c) => {
    const result = (row.toolResults ?? []).find((r) => r.tool_call_id === c.id)
    const outcome = result
      ? `${result.is_error ? 'error' : 'ok'}: ${clip(result.content.replace(/\s+/g, ' '), 200)}`
      : 'no result'
    return `- ${c.name}(${clip(JSON.stringify(c.arguments), 200)}) → ${outcome}`
  })
}

const ChatInput = z.object({
  message: z.string().min(1).max(100_000).describe('What to say'),
  agent: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .describe('Agent name, e.g. assistant, coder, researcher (the session’s agent if omitted)'),
  session: z
    .string()
    .min(1)
    .max(128)
    .optional()
    .describe(
      'A session id (sess-…) from an earlier answer, or a name of yours; a new name starts a session',
    ),
})

const NoInput = z.object({})

export function registerChatTools(server: McpServer, call: McpCall): void {
  server.registerTool(
    'chat',
    {
      title: 'Chat with a Gantry agent',
      description:
        "Send a message to one of Gantry's agents (running on the server's local model) and get its answer, with a summary of any tools it used. The exchange is kept in a chat session: omit `session` to start a new one, and pass the session id from the answer to continue the same conversation. Use list_agents to see which agents exist.",
      inputSchema: ChatInput,
      annotations: { readOnlyHint: false, openWorldHint: false },
    },
    (args, extra) =>
      guarded(call, 'chat', async () => {
        const { gantry, user } = call
        const session = args.session
          ? await getOrCreateSession(gantry, user, args.session)
          : await createSession(gantry, user, { agent: args.agent, title: clip(args.message, 60) })
        const started = await startChat(gantry, user, session, {
          message: args.message,
          agent_name: args.agent,
        })
        const stop = stopSignal(call, extra as CallExtra)
        try {
          const ended = await answerEnded(gantry, session.id, started.since, stop.signal)
          const row = ended ? await storedAnswer(gantry, started.assistantMessageId) : undefined
          if (!row)
            return text(
              `Stopped waiting; the answer is still being written and will be kept in session ${session.id} (message ${started.assistantMessageId}).`,
            )
          const tools = summarizeTools(row)
          const footer = [
            `session: ${session.id} (pass it as "session" to continue this conversation)`,
            `agent: ${row.agent ?? session.agent}${row.model ? ` · model: ${row.model}` : ''}`,
            ...(tools.length ? ['tool calls:', ...tools] : []),
          ].join('\n')
          if (row.status === 'failed')
            return toolError(
              `The agent could not answer: ${row.error?.message ?? 'unknown error'}\n\n---\n${footer}`,
            )
          const cut = row.incomplete ? '\n\n(The answer was cut short.)' : ''
          return text(`${row.content}${cut}\n\n---\n${footer}`)
        } finally {
          stop.release()
        }
      }),
  )

  server.registerTool(
    'list_agents',
    {
      title: 'List agents',
      description:
        'The agents you can chat with: built-in ones (assistant, researcher, coder), those plugins add (e.g. desktop) and your own, each with its purpose and tools.',
      inputSchema: NoInput,
      annotations: { readOnlyHint: true },
    },
    () =>
      guarded(call, 'list_agents', async () =>
        text(
          (await listAgents(call.gantry, call.user.userId)).map((a) => ({
            name: a.name,
            description: a.description,
            tools: a.tools,
            model: a.model ?? null,
            thinks: a.think,
            source: a.source,
          })),
        ),
      ),
  )
}
