import { sql } from 'drizzle-orm'
import { index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core'

/** People and machines that call Gantry. Every resource belongs to one user. */
export const users = pgTable('users', {
  id: text('id').primaryKey(),
  name: text('name').notNull(),
  role: text('role', { enum: ['admin', 'user'] })
    .notNull()
    .default('user'),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
})

/**
 * API keys, stored as SHA-256 of the whole key (keys are 192-bit random, so a slow hash adds nothing).
 * `prefix` is the public part used to find the row before the constant-time comparison.
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    prefix: text('prefix').notNull(),
    hash: text('hash').notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [uniqueIndex('api_keys_prefix_idx').on(t.prefix), index('api_keys_user_idx').on(t.userId)],
)

/** Browser login sessions behind the HttpOnly cookie; the cookie holds a random token, the row its hash. */
export const authSessions = pgTable(
  'auth_sessions',
  {
    id: text('id').primaryKey(),
    hash: text('hash').notNull(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    apiKeyId: text('api_key_id').references(() => apiKeys.id, { onDelete: 'cascade' }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp('expires_at', { withTimezone: true })
      .notNull()
      .default(sql`now() + interval '7 days'`),
    revokedAt: timestamp('revoked_at', { withTimezone: true }),
  },
  (t) => [uniqueIndex('auth_sessions_hash_idx').on(t.hash)],
)

/**
 * One durable event stream per task (`task-…`) or chat session (`sess-…`). `head` is the last seq handed
 * out: appenders bump it under the row lock, which is what keeps seqs gap-free across instances.
 */
export const eventStreams = pgTable(
  'event_streams',
  {
    id: text('id').primaryKey(),
    ownerId: text('owner_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    kind: text('kind', { enum: ['task', 'session'] }).notNull(),
    head: integer('head').notNull().default(0),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [index('event_streams_owner_idx').on(t.ownerId)],
)

/** The events of a stream, seq 1, 2, 3… with no gap; they go when their stream goes. */
export const events = pgTable(
  'events',
  {
    stream: text('stream')
      .notNull()
      .references(() => eventStreams.id, { onDelete: 'cascade' }),
    seq: integer('seq').notNull(),
    type: text('type').notNull(),
    data: jsonb('data'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.stream, t.seq] })],
)

/**
 * The durable work queue (src/core/jobs.ts): coding tasks and chat generations as leased jobs. A job is
 * `queued` until an instance claims it (`running`, with `lease_owner` and a `lease_expires_at` the heartbeat
 * keeps pushing forward); a lease that expires makes the job claimable again, resuming from `checkpoint`.
 */
export const jobs = pgTable(
  'jobs',
  {
    id: text('id').primaryKey(),
    kind: text('kind').notNull(),
    ownerId: text('owner_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    status: text('status', { enum: ['queued', 'running', 'succeeded', 'failed', 'cancelled'] })
      .notNull()
      .default('queued'),
    payload: jsonb('payload').notNull().default({}),
    checkpoint: jsonb('checkpoint'),
    attempts: integer('attempts').notNull().default(0),
    leaseOwner: text('lease_owner'),
    /**
     * The fencing token: bumped by every claim, so each attempt of a job has its own. A write the job makes
     * commits only while the row still holds that attempt's epoch (and owner): a worker paused past its
     * lease finds its writes refused once another attempt has claimed the job.
     */
    leaseEpoch: integer('lease_epoch').notNull().default(0),
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true }),
    cancelRequestedAt: timestamp('cancel_requested_at', { withTimezone: true }),
    error: text('error'),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    finishedAt: timestamp('finished_at', { withTimezone: true }),
  },
  (t) => [
    // The claim query walks only unfinished jobs of one kind, oldest first.
    index('jobs_claimable_idx').on(t.kind, t.createdAt).where(sql`status in ('queued', 'running')`),
    index('jobs_owner_idx').on(t.ownerId),
  ],
)
