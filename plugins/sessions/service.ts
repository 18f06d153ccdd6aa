import { and, asc, desc, eq, gt, lt, or, sql } from 'drizzle-orm'
import type { Gantry } from '../../src/core/context.ts'
import { prepared } from '../../src/core/db.ts'
import { HttpError, NotFound, Unprocessable } from '../../src/core/errors.ts'
import { requestJobCancel } from '../../src/core/jobs.ts'
import { newId, type Principal } from '../../src/core/keys.ts'
import { resolveAgent } from './agents.ts'
import { chatMessages, chatSessions } from './schema.ts'

export type SessionRow = typeof chatSessions.$inferSelect
export type MessageRow = typeof chatMessages.$inferSelect

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/

export interface SessionInput {
  name?: string
  title?: string
  agent?: string
  model?: string
  system_prompt?: string
  options?: Record<string, unknown>
}

/** Creates a session for the caller and its event stream (the session id is the stream id). */
export async function createSession(
  gantry: Gantry,
  user: Principal,
  input: SessionInput,
): Promise<SessionRow> {
  const agent = input.agent ?? 'assistant'
  await resolveAgent(gantry, user.userId, agent)
  const id = newId('sess')
  if (input.name?.startsWith('sess-'))
    throw Unprocessable('A session name may not start with "sess-": that prefix is for session ids.')
  const name = input.name ?? id
  const [row] = await gantry.db
    .insert(chatSessions)
    .values({
      id,
      userId: user.userId,
      name,
      title: input.title ?? null,
      agent,
      model: input.model ?? null,
      systemPrompt: input.system_prompt ?? null,
      options: input.options ?? {},
    })
    .onConflictDoNothing()
    .returning()
  if (!row) throw new HttpError(409, 'conflict', `You already have a session named "${name}".`)
  await gantry.events.createStream(id, user.userId, 'session')
  return row
}

const sessionById = prepared((db) =>
  db
    .select()
    .from(chatSessions)
    .where(eq(chatSessions.id, sql.placeholder('id')))
    .limit(1)
    .prepare('gantry_session_by_id'),
)
const sessionByName = prepared((db) =>
  db
    .select()
    .from(chatSessions)
    .where(
      and(eq(chatSessions.userId, sql.placeholder('userId')), eq(chatSessions.name, sql.placeholder('name'))),
    )
    .limit(1)
    .prepare('gantry_session_by_name'),
)

/**
 * The caller's session by id (`sess-…`) or by their own name for it. Another user's session is "not found",
 * whether or not it exists (admins may read any by id).
 */
export async function findSession(
  gantry: Gantry,
  user: Principal,
  idOrName: string,
): Promise<SessionRow | undefined> {
  const [row] = idOrName.startsWith('sess-')
    ? await sessionById(gantry.db).execute({ id: idOrName })
    : await sessionByName(gantry.db).execute({ userId: user.userId, name: idOrName })
  if (!row) return undefined
  if (row.userId !== user.userId && user.role !== 'admin') return undefined
  return row
}

export async function getSession(gantry: Gantry, user: Principal, idOrName: string): Promise<SessionRow> {
  const row = await findSession(gantry, user, idOrName)
  if (!row) throw NotFound(`Session ${idOrName}`)
  return row
}

/** `/ws/chat/test_session`: a name the caller has not used before becomes their new session. */
export async function getOrCreateSession(
  gantry: Gantry,
  user: Principal,
  idOrName: string,
): Promise<SessionRow> {
  const found = await findSession(gantry, user, idOrName)
  if (found) return found
  if (idOrName.startsWith('sess-') || !NAME.test(idOrName)) throw NotFound(`Session ${idOrName}`)
  try {
    return await createSession(gantry, user, { name: idOrName })
  } catch (err) {
    // Two first connects racing: the other one created it.
    const again = await findSession(gantry, user, idOrName)
    if (again) return again
    throw err
  }
}

/** The caller's sessions, newest activity first; the cursor is opaque (activity time and id of the last row). */
export async function listSessions(
  gantry: Gantry,
  user: Principal,
  page: { limit?: number; cursor?: string },
): Promise<{ rows: SessionRow[]; nextCursor: string | null }> {
  const limit = page.limit ?? 50
  let after: { at: Date; id: string } | undefined
  if (page.cursor) {
    const [at, id] = Buffer.from(page.cursor, 'base64url').toString().split('|')
    const date = new Date(String(at))
    if (!id || Number.isNaN(date.getTime())) throw Unprocessable('Invalid cursor: pass next_cursor as given.')
    after = { at: date, id }
  }
  const rows = await gantry.db
    .select()
    .from(chatSessions)
    .where(
      and(
        eq(chatSessions.userId, user.userId),
        after
          ? or(
              lt(chatSessions.lastActivityAt, after.at),
              and(eq(chatSessions.lastActivityAt, after.at), lt(chatSessions.id, after.id)),
            )
          : undefined,
      ),
    )
    .orderBy(desc(chatSessions.lastActivityAt), desc(chatSessions.id))
    .limit(limit + 1)
  const more = rows.length > limit
  const pageRows = rows.slice(0, limit)
  const last = pageRows.at(-1)
  return {
    rows: pageRows,
    nextCursor:
      more && last
        ? Buffer.from(`${last.lastActivityAt.toISOString()}|${last.id}`).toString('base64url')
        : null,
  }
}

export async function updateSession(
  gantry: Gantry,
  user: Principal,
  idOrName: string,
  patch: { title?: string | null; agent?: string; model?: string | null },
): Promise<SessionRow> {
  const session = await getSession(gantry, user, idOrName)
  if (patch.agent) await resolveAgent(gantry, session.userId, patch.agent)
  const [row] = await gantry.db
    .update(chatSessions)
    .set({
      ...(patch.title !== undefined ? { title: patch.title } : {}),
      ...(patch.agent !== undefined ? { agent: patch.agent } : {}),
      ...(patch.model !== undefined ? { model: patch.model } : {}),
      lastActivityAt: new Date(),
    })
    .where(eq(chatSessions.id, session.id))
    .returning()
  if (!row) throw NotFound(`Session ${idOrName}`)
  return row
}

/** Deletes a session with its messages and events; a running generation is cancelled first. */
export async function deleteSession(gantry: Gantry, session: SessionRow): Promise<void> {
  if (session.activeMessageId) await requestJobCancel(gantry.store, session.activeMessageId)
  await gantry.db.delete(chatSessions).where(eq(chatSessions.id, session.id))
  await gantry.events.deleteStream(session.id)
}

export async function listMessages(
  gantry: Gantry,
  sessionId: string,
  page: { limit?: number; cursor?: string; order?: 'asc' | 'desc' },
): Promise<{ rows: MessageRow[]; nextCursor: string | null }> {
  const limit = page.limit ?? 50
  const from = page.cursor === undefined ? 0 : Number(page.cursor)
  if (!Number.isInteger(from) || from < 0) throw Unprocessable('Invalid cursor: pass next_cursor as given.')
  // Newest first lets a reader open a long conversation at its end and page back.
  const newestFirst = page.order === 'desc'
  const bound = newestFirst
    ? page.cursor === undefined
      ? undefined
      : lt(chatMessages.seq, from)
    : gt(chatMessages.seq, from)
  const rows = await gantry.db
    .select()
    .from(chatMessages)
    .where(and(eq(chatMessages.sessionId, sessionId), bound))
    .orderBy(newestFirst ? desc(chatMessages.seq) : asc(chatMessages.seq))
    .limit(limit + 1)
  const more = rows.length > limit
  const pageRows = rows.slice(0, limit)
  return { rows: pageRows, nextCursor: more ? String(pageRows.at(-1)!.seq) : null }
}

export const touchSession = (gantry: Gantry, sessionId: string) =>
  gantry.db.update(chatSessions).set({ lastActivityAt: sql`now()` }).where(eq(chatSessions.id, sessionId))
