import { randomBytes } from 'node:crypto'
import { sql } from 'drizzle-orm'
import type { Database } from '../../src/core/db.ts'
import { type Principal, sha256 } from '../../src/core/keys.ts'
import { wsTickets } from './schema.ts'

export const TICKET_TTL_SECONDS = 30

/** Issues a single-use ticket for one WebSocket upgrade; only its hash is stored. */
export async function issueTicket(
  db: Database,
  principal: Principal,
): Promise<{ ticket: string; expiresAt: Date }> {
  const ticket = `wst_${randomBytes(24).toString('base64url')}`
  const expiresAt = new Date(Date.now() + TICKET_TTL_SECONDS * 1000)
  // Spent and expired tickets are worthless: sweep them as new ones are made, so the table stays tiny.
  await db.delete(wsTickets).where(sql`${wsTickets.expiresAt} < now()`)
  await db
    .insert(wsTickets)
    .values({ hash: sha256(`t:${ticket}`), userId: principal.userId, principal, expiresAt })
  return { ticket, expiresAt }
}

/** Redeems a ticket once (deleting it in the same statement, so two instances cannot both accept it). */
export async function redeemTicket(db: Database, ticket: string): Promise<Principal | null> {
  if (!/^wst_[\w-]{20,64}$/.test(ticket)) return null
  const [row] = await db
    .delete(wsTickets)
    .where(sql`${wsTickets.hash} = ${sha256(`t:${ticket}`)}`)
    .returning({ principal: wsTickets.principal, expiresAt: wsTickets.expiresAt })
  if (!row || row.expiresAt.getTime() < Date.now()) return null
  return row.principal as Principal
}
