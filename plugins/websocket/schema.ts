import { jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core'
import { users } from '../../src/core/schema.ts'

/**
 * Single-use WebSocket tickets for browsers (which cannot set headers on an upgrade). Kept in the database, not
 * in memory, so a ticket issued by one instance works on another behind the same proxy; the row holds a hash.
 */
export const wsTickets = pgTable('ws_tickets', {
  hash: text('hash').primaryKey(),
  userId: text('user_id')
    .notNull()
    .references(() => users.id, { onDelete: 'cascade' }),
  /** The principal that asked for the ticket, as the upgrade will see it. */
  principal: jsonb('principal').notNull(),
  expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
})
