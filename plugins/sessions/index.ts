import { Elysia, t } from 'elysia'
import { auth } from '../../src/core/auth.ts'
import { type Gantry, gantryContext, gantryOf } from '../../src/core/context.ts'
import { ErrorBody } from '../../src/core/errors.ts'
import { publicOrigin } from '../../src/core/http.ts'
import type { PluginMeta } from '../../src/core/loader.ts'
import { createUserAgent, deleteUserAgent, listAgents } from './agents.ts'
import { cancelChat, startChat } from './chat.ts'
import {
  AgentBody,
  AgentCreate,
  AgentList,
  CancelResult,
  ChatAccepted,
  ChatRequest,
  MessageList,
  MessagePage,
  Page,
  SessionBody,
  SessionCreate,
  SessionList,
  SessionParams,
  SessionPatch,
} from './model.ts'
import { openaiRoutes } from './openai.ts'
import { startRetention } from './retention.ts'
import { createChatRunner } from './runner.ts'
import {
  createSession,
  deleteSession,
  getSession,
  listMessages,
  listSessions,
  type MessageRow,
  type SessionRow,
  updateSession,
} from './service.ts'
import { chatSocket } from './ws-chat.ts'

export const meta: PluginMeta = {
  dependsOn: ['websocket'],
  description:
    'Chat sessions with named agents: streamed reasoning and answers, tool calls, history kept; an OpenAI-compatible API.',
  entryPoints: {
    sessions: '/api/sessions',
    agents: '/v1/agents',
    chat_completions: '/v1/chat/completions',
    websocket: '/ws/chat/{session_id}',
  },
}

const chatUrl = (request: Request, gantry: Gantry, id: string) =>
  `${publicOrigin(request, gantry).ws}/ws/chat/${encodeURIComponent(id)}`

const toSessionBody = (s: SessionRow, request: Request, gantry: Gantry) => ({
  session_id: s.id,
  name: s.name,
  title: s.title,
  agent: s.agent,
  model: s.model,
  system_prompt: s.systemPrompt,
  options: s.options,
  generating: s.activeMessageId !== null,
  active_message_id: s.activeMessageId,
  created_at: s.createdAt.toISOString(),
  last_activity_at: s.lastActivityAt.toISOString(),
  websocket_url: chatUrl(request, gantry, s.id),
})

const toMessageBody = (m: MessageRow) => ({
  message_id: m.id,
  seq: m.seq,
  role: m.role,
  content: m.content,
  thinking: m.thinking,
  tool_calls: m.toolCalls ?? [],
  tool_results: m.toolResults ?? [],
  agent: m.agent,
  model: m.model,
  status: m.status,
  incomplete: m.incomplete,
  error: m.error ?? null,
  prompt_tokens: m.promptTokens,
  completion_tokens: m.completionTokens,
  timings: (m.timings as Record<string, number> | null) ?? null,
  created_at: m.createdAt.toISOString(),
  completed_at: m.completedAt?.toISOString() ?? null,
})

const toAgentBody = (a: Awaited<ReturnType<typeof listAgents>>[number]) => ({
  name: a.name,
  description: a.description,
  model: a.model ?? null,
  system_prompt: a.systemPrompt,
  tools: a.tools,
  think: a.think,
  options: a.options,
  source: a.source,
})

const sessionErrors = { 401: ErrorBody, 404: ErrorBody, 422: ErrorBody } as const

/** The sessions plugin: REST sessions and messages, the chat socket, agents, the OpenAI-compatible API. */
export default new Elysia({ name: 'sessions', tags: ['Sessions'] })
  .use(gantryContext)
  .use(auth)
  .post(
    '/api/sessions',
    async ({ gantry, user, body, request, set }) => {
      const session = await createSession(gantry, user, body)
      set.status = 201
      return toSessionBody(session, request, gantry)
    },
    {
      auth: true,
      body: SessionCreate,
      response: { 201: SessionBody, 409: ErrorBody, ...sessionErrors },
      detail: {
        summary: 'Create a chat session',
        description:
          'A conversation with an agent (default `assistant`). `name` is your own handle for it, usable wherever a session id is.',
      },
    },
  )
  .get(
    '/api/sessions',
    async ({ gantry, user, query, request }) => {
      const page = await listSessions(gantry, user, query)
      return {
        sessions: page.rows.map((s) => toSessionBody(s, request, gantry)),
        next_cursor: page.nextCursor,
      }
    },
    {
      auth: true,
      query: Page,
      response: { 200: SessionList, ...sessionErrors },
      detail: {
        summary: 'List your sessions',
        description: 'Newest activity first; follow next_cursor for more.',
      },
    },
  )
  .get(
    '/api/sessions/:id',
    async ({ gantry, user, params, request }) =>
      toSessionBody(await getSession(gantry, user, params.id), request, gantry),
    {
      auth: true,
      params: SessionParams,
      response: { 200: SessionBody, ...sessionErrors },
      detail: { summary: 'Get a session', description: 'By id (sess-…) or your name for it.' },
    },
  )
  .patch(
    '/api/sessions/:id',
    async ({ gantry, user, params, body, request }) =>
      toSessionBody(await updateSession(gantry, user, params.id, body), request, gantry),
    {
      auth: true,
      params: SessionParams,
      body: SessionPatch,
      response: { 200: SessionBody, ...sessionErrors },
      detail: { summary: 'Rename or retarget a session', description: 'Change its title, agent or model.' },
    },
  )
  .delete(
    '/api/sessions/:id',
    async ({ gantry, user, params }) => {
      const session = await getSession(gantry, user, params.id)
      await deleteSession(gantry, session)
      return { deleted: session.id }
    },
    {
      auth: true,
      params: SessionParams,
      response: { 200: t.Object({ deleted: t.String() }), ...sessionErrors },
      detail: {
        summary: 'Delete a session',
        description: 'Its messages and events go too; a running generation is cancelled.',
      },
    },
  )
  .get(
    '/api/sessions/:id/messages',
    async ({ gantry, user, params, query }) => {
      const session = await getSession(gantry, user, params.id)
      const page = await listMessages(gantry, session.id, query)
      return { messages: page.rows.map(toMessageBody), next_cursor: page.nextCursor }
    },
    {
      auth: true,
      params: SessionParams,
      query: MessagePage,
      response: { 200: MessageList, ...sessionErrors },
      detail: {
        summary: 'Messages of a session',
        description:
          'Oldest first (order=desc: newest first), with reasoning, tool calls and results, model, timings and token counts; follow next_cursor for more.',
      },
    },
  )
  .post(
    '/api/sessions/:id/chat',
    async ({ gantry, user, params, body, request, set }) => {
      const session = await getSession(gantry, user, params.id)
      const started = await startChat(gantry, user, session, body)
      set.status = 202
      return {
        session_id: session.id,
        message_id: started.userMessageId,
        assistant_message_id: started.assistantMessageId,
        websocket_url: `${chatUrl(request, gantry, session.id)}?since=${started.since}`,
        since: started.since,
      }
    },
    {
      auth: true,
      params: SessionParams,
      body: ChatRequest,
      response: { 202: ChatAccepted, 409: ErrorBody, ...sessionErrors },
      detail: {
        summary: 'Send a message',
        description:
          'Stores the message and queues the answer as a durable job; it goes on if you disconnect. Follow it on websocket_url (or GET /api/streams/{session_id}/events). 409 `busy` while another answer is being generated.',
      },
    },
  )
  .post(
    '/api/sessions/:id/cancel',
    async ({ gantry, user, params }) => {
      const session = await getSession(gantry, user, params.id)
      const messageId = await cancelChat(gantry, session)
      return { cancelled: messageId !== null, message_id: messageId }
    },
    {
      auth: true,
      params: SessionParams,
      response: { 200: CancelResult, ...sessionErrors },
      detail: {
        summary: 'Stop the answer being generated',
        description: 'Within a second; the partial answer is kept, marked incomplete.',
      },
    },
  )
  .get(
    '/v1/agents',
    async ({ gantry, user }) => ({
      object: 'list' as const,
      agents: (await listAgents(gantry, user.userId)).map(toAgentBody),
    }),
    {
      auth: true,
      tags: ['Agents'],
      response: { 200: AgentList, 401: ErrorBody },
      detail: {
        summary: 'List agents',
        description: 'Built-in agents (assistant, researcher, coder), those plugins add, and your own.',
      },
    },
  )
  .post(
    '/v1/agents',
    async ({ gantry, user, body, set }) => {
      const agent = await createUserAgent(gantry, user.userId, body)
      set.status = 201
      return toAgentBody(agent)
    },
    {
      auth: true,
      tags: ['Agents'],
      body: AgentCreate,
      response: { 201: AgentBody, 409: ErrorBody, ...sessionErrors },
      detail: {
        summary: 'Create an agent',
        description: 'Your own agent: model, system prompt, tools, thinking.',
      },
    },
  )
  .delete(
    '/v1/agents/:name',
    async ({ gantry, user, params }) => {
      await deleteUserAgent(gantry.db, user.userId, params.name)
      return { deleted: params.name }
    },
    {
      auth: true,
      tags: ['Agents'],
      params: t.Object({ name: t.String({ minLength: 1, maxLength: 128 }) }),
      response: { 200: t.Object({ deleted: t.String() }), ...sessionErrors },
      detail: { summary: 'Delete one of your agents', description: 'Built-in agents cannot be deleted.' },
    },
  )
  .use(openaiRoutes)
  .use(chatSocket)
  .onStart(async (app) => {
    const gantry = gantryOf(app)
    const runner = createChatRunner(gantry)
    gantry.state.set('sessions:runner', runner)
    await runner.start()
    gantry.state.set('sessions:retention', startRetention(gantry))
  })
  .onStop(async (app) => {
    const gantry = gantryOf(app)
    ;(gantry.state.get('sessions:retention') as (() => void) | undefined)?.()
    const runner = gantry.state.get('sessions:runner') as ReturnType<typeof createChatRunner> | undefined
    await runner?.stop()
    gantry.state.delete('sessions:runner')
    gantry.state.delete('sessions:retention')
  })
