import { and, eq, isNull } from 'drizzle-orm'
import type { Gantry } from '../../src/core/context.ts'
import type { Executor } from '../../src/core/db.ts'
import { HttpError, NotFound, Unprocessable } from '../../src/core/errors.ts'
import { enqueueJob, getJob, requestJobCancel } from '../../src/core/jobs.ts'
import { newId, type Principal } from '../../src/core/keys.ts'
import { resolveAgent } from './agents.ts'
import { chatMessages, chatSessions } from './schema.ts'
import type { SessionRow } from './service.ts'

export const CHAT_JOB_KIND = 'chat'
/** What a chat job carries: enough for any instance to run (or resume) the answer. */
export interface ChatJobPayload {
  session_id: string
  user_message_id: string
  assistant_message_id: string
  user: Principal
  agent: string
  enable_reasoning: boolean
}

export const Busy = (sessionId: string, messageId: string) =>
  new HttpError(
    409,
    'busy',
    `Session ${sessionId} is already generating an answer (${messageId}); wait for it or cancel it first.`,
    { active_message_id: messageId },
  )

export interface ChatInput {
  message: string
  agent_name?: string
  enable_reasoning?: boolean
}

/** True when the session's active generation is no longer queued or running (its instance died mid-finish). */
async function activeIsStale(gantry: Gantry, messageId: string): Promise<boolean> {
  const job = await getJob(gantry.store, messageId)
  return !job || (job.status !== 'queued' && job.status !== 'running')
}

/**
 * Stores the user's message, reserves the assistant message and queues its generation as a durable job.
 * One generation per session: a second one meanwhile is a 409 `busy`.
 */
export async function startChat(
  gantry: Gantry,
  user: Principal,
  session: SessionRow,
  input: ChatInput,
): Promise<{ userMessageId: string; assistantMessageId: string; since: number }> {
  const message = input.message
  if (!message.trim())
    throw Unprocessable('The message is empty.', [{ path: 'body/message', message: 'empty' }])
  const agentName = input.agent_name ?? session.agent
  const agent = await resolveAgent(gantry, session.userId, agentName)
  const userMessageId = newId('msg')
  const assistantMessageId = newId('msg')
  const claim = () =>
    gantry.db
      .update(chatSessions)
      .set({ activeMessageId: assistantMessageId, lastActivityAt: new Date() })
      .where(and(eq(chatSessions.id, session.id), isNull(chatSessions.activeMessageId)))
      .returning({ id: chatSessions.id })
  let claimed = await claim()
  if (!claimed.length) {
    const [current] = await gantry.db
      .select({ active: chatSessions.activeMessageId })
      .from(chatSessions)
      .where(eq(chatSessions.id, session.id))
    if (!current) throw NotFound(`Session ${session.id}`)
    if (current.active && (await activeIsStale(gantry, current.active))) {
      await releaseSession(gantry.db, session.id, current.active)
      claimed = await claim()
    }
    if (!claimed.length) throw Busy(session.id, current.active ?? 'unknown')
  }
  try {
    const since = await gantry.events.head(session.id)
    await gantry.db.insert(chatMessages).values([
      { id: userMessageId, sessionId: session.id, role: 'user', content: message, agent: agent.name },
      {
        id: assistantMessageId,
        sessionId: session.id,
        role: 'assistant',
        agent: agent.name,
        status: 'pending',
        streamSeq: since,
      },
    ])
    await gantry.events.append(session.id, 'message', {
      message_id: userMessageId,
      role: 'user',
      content: message,
      assistant_message_id: assistantMessageId,
      agent: agent.name,
    })
    const payload: ChatJobPayload = {
      session_id: session.id,
      user_message_id: userMessageId,
      assistant_message_id: assistantMessageId,
      user,
      agent: agent.name,
      enable_reasoning: input.enable_reasoning ?? agent.think,
    }
    await enqueueJob(gantry.store, {
      id: assistantMessageId,
      kind: CHAT_JOB_KIND,
      ownerId: session.userId,
      payload,
    })
    return { userMessageId, assistantMessageId, since }
  } catch (err) {
    await releaseSession(gantry.db, session.id, assistantMessageId).catch(() => {})
    throw err
  }
}

/** Frees the session for the next generation (only if `messageId` still holds it). */
export async function releaseSession(db: Executor, sessionId: string, messageId: string): Promise<void> {
  await db
    .update(chatSessions)
    .set({ activeMessageId: null, lastActivityAt: new Date() })
    .where(and(eq(chatSessions.id, sessionId), eq(chatSessions.activeMessageId, messageId)))
}

/** Stops the session's running generation; the partial answer is kept, marked incomplete. */
export async function cancelChat(gantry: Gantry, session: SessionRow): Promise<string | null> {
  const [current] = await gantry.db
    .select({ active: chatSessions.activeMessageId })
    .from(chatSessions)
    .where(eq(chatSessions.id, session.id))
  const active = current?.active
  if (!active) return null
  const outcome = await requestJobCancel(gantry.store, active)
  // Queued (never started) or already over: nobody else will finish the message, so do it here.
  if (outcome !== 'requested') {
    await gantry.db
      .update(chatMessages)
      .set({ status: 'incomplete', incomplete: true, completedAt: new Date() })
      .where(and(eq(chatMessages.id, active), eq(chatMessages.status, 'pending')))
    await releaseSession(gantry.db, session.id, active)
    await gantry.events
      .append(session.id, 'response', {
        message_id: active,
        content: '',
        incomplete: true,
        reason: 'cancelled',
        metrics: null,
      })
      .catch(() => {})
  }
  return active
}
