import { sql } from 'drizzle-orm'
import {
  bigserial,
  boolean,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
} from 'drizzle-orm/pg-core'
import { users } from '../../src/core/schema.ts'

/**
 * A conversation of one user with an agent. `name` is the caller's own handle for it (the `test_session` of
 * `/ws/chat/test_session`), unique per user, so two users' sessions of the same name never meet.
 * `active_message_id` is the assistant message being generated: at most one generation per session.
 */
export const chatSessions = pgTable(
  'chat_sessions',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    title: text('title'),
    agent: text('agent').notNull().default('assistant'),
    model: text('model'),
    systemPrompt: text('system_prompt'),
    options: jsonb('options').$type<Record<string, unknown>>().notNull().default({}),
    activeMessageId: text('active_message_id'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastActivityAt: timestamp('last_activity_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('chat_sessions_user_name_idx').on(t.userId, t.name),
    index('chat_sessions_user_activity_idx').on(t.userId, t.lastActivityAt),
    index('chat_sessions_activity_idx').on(t.lastActivityAt),
  ],
)

export interface StoredToolCall {
  id: string
  name: string
  arguments: Record<string, unknown>
  step: number
}

export interface StoredToolResult {
  tool_call_id: string
  name: string
  content: string
  is_error: boolean
}

export interface MessageTimings {
  total_ms?: number
  first_token_ms?: number
  tokens_per_second?: number
  tool_steps?: number
}

/**
 * Every message of a session, in `seq` order. An assistant message keeps its reasoning (`thinking`), the tool
 * calls it made and their results; `incomplete` marks an answer cut short (cancel, Ollama failure).
 */
export const chatMessages = pgTable(
  'chat_messages',
  {
    seq: bigserial('seq', { mode: 'number' }).primaryKey(),
    id: text('id').notNull(),
    sessionId: text('session_id')
      .notNull()
      .references(() => chatSessions.id, { onDelete: 'cascade' }),
    role: text('role', { enum: ['system', 'user', 'assistant'] }).notNull(),
    content: text('content').notNull().default(''),
    thinking: text('thinking'),
    toolCalls: jsonb('tool_calls').$type<StoredToolCall[]>(),
    toolResults: jsonb('tool_results').$type<StoredToolResult[]>(),
    agent: text('agent'),
    model: text('model'),
    status: text('status', { enum: ['pending', 'streaming', 'complete', 'incomplete', 'failed'] })
      .notNull()
      .default('complete'),
    incomplete: boolean('incomplete').notNull().default(false),
    error: jsonb('error').$type<{ code: string; message: string }>(),
    promptTokens: integer('prompt_tokens'),
    completionTokens: integer('completion_tokens'),
    timings: jsonb('timings').$type<MessageTimings>(),
    /** The event-log seq just before this message's first event: where a late client starts its replay. */
    streamSeq: integer('stream_seq'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    completedAt: timestamp('completed_at', { withTimezone: true }),
  },
  (t) => [
    uniqueIndex('chat_messages_id_idx').on(t.id),
    index('chat_messages_session_idx').on(t.sessionId, t.seq),
  ],
)

/** Agents a user defined for themselves; built-in agents live in code (agents.ts) and the tool registry. */
export const userAgents = pgTable(
  'user_agents',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    description: text('description'),
    model: text('model'),
    systemPrompt: text('system_prompt').notNull().default(''),
    tools: jsonb('tools').$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    think: boolean('think').notNull().default(false),
    options: jsonb('options').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('user_agents_user_name_idx').on(t.userId, t.name)],
)
