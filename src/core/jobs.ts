/**
 * The durable job queue: coding tasks and chat generations are leased jobs in Postgres, so any instance can run
 * any job and a killed instance's work resumes elsewhere from its last checkpoint.
 *
 * - `enqueueJob(store, { id, kind, ownerId, payload })` inserts a queued job and rings the `gantry_jobs`
 *   doorbell (NOTIFY) so an idle runner claims it at once. To enqueue inside your own transaction, call
 *   `insertJob(tx, job)` there and `ringJobsSoon(store, kind)` after the commit (coalesced, not awaited:
 *   NOTIFY commits serialise on one lock).
 * - `new JobRunner(store, log, { kind, concurrency, handler })` runs jobs of one kind on this instance:
 *   `start()` in onStart, `stop()` in onStop. It claims with `FOR UPDATE SKIP LOCKED`, oldest first, up to
 *   `concurrency` at once; renews its leases every `heartbeatMs`; re-claims jobs whose lease expired (their
 *   instance died); and polls every `pollMs` as a safety net for missed doorbells.
 * - The handler gets the job (with `checkpoint`, the state it saved last time, or null) and a context:
 *   `ctx.checkpoint(state)` saves progress (throws `LeaseLostError` if another instance took the job over);
 *   `ctx.signal` aborts with a `JobAbort` whose `reason` is `cancelled` (someone called `requestJobCancel`),
 *   `shutdown` (this instance is stopping) or `lease_lost`. It returns a `JobOutcome` (or nothing: succeeded).
 *   Throwing after a `shutdown`/`lease_lost` abort puts the job back in the queue (not failed); after a
 *   `cancelled` abort it becomes cancelled; any other throw fails the job with the error's message.
 * - `requestJobCancel(store, id)`: a queued job is cancelled at once; a running one is marked and the doorbell
 *   reaches the instance running it (within milliseconds; the heartbeat re-checks as a backstop).
 * - Fencing: every claim bumps the job's `lease_epoch`, and `ctx.fence` names this attempt. A write the job
 *   makes commits only while the row still holds that epoch and owner, checked in the write's own
 *   transaction: events through `events.append(…, { fence })`, rows through `ctx.fenced(tx => …)`,
 *   checkpoints and the job's end here. A worker paused past its lease (SIGSTOP, a long GC, a stalled VM)
 *   whose job was claimed again finds its next write refused: the write throws `LeaseLostError`, `ctx.signal`
 *   aborts with `lease_lost` at once, and nothing it does after that reaches the database.
 *
 * @example
 * const runner = new JobRunner(gantry.store, gantry.log, {
 *   kind: 'task', concurrency: 4,
 *   handler: async (job, ctx) => { await step(ctx.signal); await ctx.checkpoint({ step: 1 }) },
 * })
 * await runner.start()
 * await enqueueJob(gantry.store, { id: 'task-1', kind: 'task', ownerId: user.userId, payload: { prompt } })
 */
import { hostname } from 'node:os'
import { sql } from 'drizzle-orm'
import type { Executor, Store } from './db.ts'
import type { Logger } from './logger.ts'
import { recordJobClaimed, recordJobOutcome } from './metrics.ts'
import { jobs } from './schema.ts'

export const JOBS_CHANNEL = 'gantry_jobs'

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled'

export interface NewJob {
  id: string
  kind: string
  ownerId: string
  payload: unknown
}

/** A job this instance holds the lease of. */
export interface ClaimedJob<P = any, C = any> {
  id: string
  kind: string
  ownerId: string
  payload: P
  /** What the handler saved with `ctx.checkpoint` on an earlier attempt, or null. */
  checkpoint: C | null
  /** 1 on the first claim; more when resumed after a crash, a shutdown or a lost lease. */
  attempts: number
  createdAt: Date
  /** The claim time of this attempt (by the database clock). */
  claimedAt: Date
  /** This attempt's fencing token (`jobs.lease_epoch` after the claim). */
  epoch: number
}

/**
 * Names one attempt of a job: its writes commit only while `jobs.lease_epoch = epoch and lease_owner = owner`
 * (and the job is running). `onFenced` is called when a write was refused, so the worker stops at once.
 */
export interface Fence {
  jobId: string
  epoch: number
  owner: string
  onFenced?: () => void
}

export type AbortReason = 'cancelled' | 'shutdown' | 'lease_lost'

/** The reason `ctx.signal` carries when a job is stopped. */
export class JobAbort extends Error {
  constructor(readonly reason: AbortReason) {
    super(`job ${reason === 'lease_lost' ? 'lease lost' : reason}`)
    this.name = 'JobAbort'
  }
}

/** Another instance owns the job now: stop working on it without touching it. */
export class LeaseLostError extends Error {
  constructor(id: string) {
    super(`the lease on job ${id} was lost (another instance took it over)`)
    this.name = 'LeaseLostError'
  }
}

export interface JobContext<C = any> {
  signal: AbortSignal
  /** Saves resumable progress; only the lease holder can. */
  checkpoint(state: C): Promise<void>
  instanceId: string
  /** This attempt's fencing token: pass it with every event the job appends. */
  fence: Fence
  /**
   * Runs `work` in a transaction that first takes the job row FOR SHARE and checks the fence: a takeover cannot
   * commit between the check and the writes. Throws `LeaseLostError` (and aborts `signal`) when fenced.
   */
  fenced<T>(work: (tx: Executor) => Promise<T>): Promise<T>
}

export type JobOutcome =
  | { status: 'succeeded' }
  | { status: 'failed'; error: string }
  | { status: 'cancelled' }
  /** Back to the queue, for another instance (or a restart) to resume from the checkpoint. */
  | { status: 'released' }

export type JobHandler<P = any, C = any> = (
  job: ClaimedJob<P, C>,
  ctx: JobContext<C>,
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler that returns nothing has succeeded
) => Promise<JobOutcome | undefined | void>

export interface JobRunnerOptions<P = any, C = any> {
  kind: string
  concurrency: number
  handler: JobHandler<P, C>
  /** How long a claim lasts without a heartbeat; a dead instance's jobs are re-claimed after this. */
  leaseMs?: number
  /** Lease renewal period; defaults to a third of the lease. */
  heartbeatMs?: number
  /** Safety-net poll for missed doorbells and expired leases; defaults to half the lease, at most 5 s. */
  pollMs?: number
  /** How long stop() waits for handlers to reach a safe point before releasing their leases anyway. */
  stopTimeoutMs?: number
  instanceId?: string
}

/** The abort reason of a signal aborted by a runner, if any. */
export function abortReasonOf(signal: AbortSignal): AbortReason | undefined {
  return signal.aborted && signal.reason instanceof JobAbort ? signal.reason.reason : undefined
}

/** Inserts a queued job (inside the caller's transaction if given). Ring the doorbell after the commit. */
export async function insertJob(db: Executor, job: NewJob): Promise<void> {
  await db
    .insert(jobs)
    .values({ id: job.id, kind: job.kind, ownerId: job.ownerId, payload: job.payload ?? {} })
}

/** The doorbell payload that wakes the runners of `kind` (for a `pg_notify` inside a caller's own statement). */
export const jobsDoorbell = (kind: string): string => `enqueued:${kind}`

/** Wakes idle runners of `kind` on every instance. */
export async function ringJobs(store: Store, kind: string): Promise<void> {
  await store.notify(JOBS_CHANNEL, jobsDoorbell(kind))
}

const ringing = new WeakMap<Store, Map<string, { again: boolean }>>()

/**
 * Rings the doorbell of `kind` after the caller's commit without waiting for it, coalesced: while one ring is
 * in flight, any number of calls make one more ring after it. Every call is still followed by a ring that
 * starts after it. Why: a NOTIFY's commit takes a database-wide lock (the notification queue's) and holds it
 * through its WAL flush, so a ring per enqueue, awaited, put every POST /tasks in one line, one fsync each.
 * A lost ring costs only latency: the runners' poll finds the job anyway.
 */
export function ringJobsSoon(store: Store, kind: string): void {
  let kinds = ringing.get(store)
  if (!kinds) {
    kinds = new Map()
    ringing.set(store, kinds)
  }
  const inFlight = kinds.get(kind)
  if (inFlight) {
    inFlight.again = true
    return
  }
  const state = { again: false }
  kinds.set(kind, state)
  void (async () => {
    do {
      state.again = false
      await ringJobs(store, kind).catch(() => {})
    } while (state.again)
    kinds.delete(kind)
  })()
}

/** Inserts a queued job and wakes the runners (without waiting for the doorbell, see `ringJobsSoon`). */
export async function enqueueJob(store: Store, job: NewJob): Promise<void> {
  await insertJob(store.db, job)
  ringJobsSoon(store, job.kind)
}

interface JobRow {
  id: string
  lease_epoch: number
  kind: string
  owner_id: string
  status: JobStatus
  payload: unknown
  checkpoint: unknown
  attempts: number
  created_at: Date
  claimed_at: Date
  cancel_requested_at: Date | null
  error: string | null
}

const parseJson = (v: unknown) => (typeof v === 'string' ? JSON.parse(v) : v)
const asDate = (v: unknown) => (v instanceof Date ? v : new Date(String(v)))

/**
 * Claims up to `limit` jobs of `kind` for `owner`: queued ones and running ones whose lease expired,
 * oldest first, skipping rows other instances are claiming right now.
 */
export async function claimJobs(
  store: Store,
  kind: string,
  limit: number,
  owner: string,
  leaseMs: number,
): Promise<(ClaimedJob & { cancelRequested: boolean })[]> {
  const rows = await store.query<JobRow>(
    `with next as (
       select id from jobs
        where kind = $1 and (status = 'queued' or (status = 'running' and lease_expires_at < now()))
        order by created_at, id
        limit $2
        for update skip locked
     )
     update jobs j
        set status = 'running', lease_owner = $3, lease_expires_at = now() + $4::int * interval '1 millisecond',
            attempts = j.attempts + 1, started_at = coalesce(j.started_at, now()),
            lease_epoch = j.lease_epoch + 1
       from next
      where j.id = next.id
     returning j.id, j.kind, j.owner_id, j.payload, j.checkpoint, j.attempts, j.created_at,
               j.cancel_requested_at, j.lease_epoch, now() as claimed_at`,
    [kind, limit, owner, leaseMs],
  )
  return rows
    .map((r) => ({
      id: r.id,
      kind: r.kind,
      ownerId: r.owner_id,
      payload: parseJson(r.payload),
      checkpoint: parseJson(r.checkpoint) ?? null,
      attempts: Number(r.attempts),
      createdAt: asDate(r.created_at),
      claimedAt: asDate(r.claimed_at),
      epoch: Number(r.lease_epoch),
      cancelRequested: r.cancel_requested_at !== null,
    }))
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id))
}

/** Puts a job this attempt holds back in the queue, keeping its checkpoint. */
export async function releaseJob(store: Store, id: string, owner: string, epoch: number): Promise<boolean> {
  const rows = await store.query(
    `update jobs set status = 'queued', lease_owner = null, lease_expires_at = null
      where id = $1 and lease_owner = $2 and lease_epoch = $3 and status = 'running' returning id`,
    [id, owner, epoch],
  )
  return rows.length > 0
}

/** Marks a job this attempt holds as finished. */
async function finishJob(
  store: Store,
  fence: Fence,
  status: 'succeeded' | 'failed' | 'cancelled',
  error?: string,
): Promise<boolean> {
  const rows = await store.query(
    `update jobs set status = $4, error = $5, finished_at = now(), lease_owner = null, lease_expires_at = null
      where id = $1 and lease_owner = $2 and lease_epoch = $3 and status = 'running' returning id`,
    [fence.jobId, fence.owner, fence.epoch, status, error ?? null],
  )
  return rows.length > 0
}

/**
 * Takes the job row FOR SHARE inside `tx` and checks the fence. Held to the end of the transaction, the lock
 * makes a claim wait (or skip the row) until this transaction's writes are committed, and a claim that
 * committed first makes the check fail: so no write of an old attempt lands after a new attempt began.
 */
export async function holdLease(tx: Executor, fence: Fence): Promise<void> {
  const rows = rowsOf(
    await tx.execute(sql`
      select 1 from jobs
       where id = ${fence.jobId} and lease_epoch = ${fence.epoch} and lease_owner = ${fence.owner}
         and status = 'running'
       for share`),
  )
  if (rows.length === 0) fenced(fence)
}

/**
 * The fence as a condition for a single-statement write (`update … where … and ${leaseHeld(fence)}`): the same
 * check and row lock as `holdLease`, in one round trip. The caller treats "no row written" as fenced.
 */
export const leaseHeld = (fence: Fence) =>
  sql`exists (select 1 from jobs
               where id = ${fence.jobId} and lease_epoch = ${fence.epoch} and lease_owner = ${fence.owner}
                 and status = 'running'
                 for share)`

/** What a fenced single-statement write that wrote nothing means: the job was taken over. */
export function fenced(fence: Fence): never {
  fence.onFenced?.()
  throw new LeaseLostError(fence.jobId)
}

const rowsOf = (result: unknown): unknown[] =>
  Array.isArray(result) ? result : ((result as { rows?: unknown[] }).rows ?? [])

export interface JobState {
  id: string
  kind: string
  ownerId: string
  status: JobStatus
  attempts: number
  checkpoint: unknown
  leaseOwner: string | null
  cancelRequested: boolean
  error: string | null
}

export async function getJob(store: Store, id: string): Promise<JobState | undefined> {
  const [r] = await store.query<JobRow & { lease_owner: string | null }>(
    `select id, kind, owner_id, status, checkpoint, attempts, lease_owner, cancel_requested_at, error
       from jobs where id = $1`,
    [id],
  )
  if (!r) return undefined
  return {
    id: r.id,
    kind: r.kind,
    ownerId: r.owner_id,
    status: r.status,
    attempts: Number(r.attempts),
    checkpoint: parseJson(r.checkpoint) ?? null,
    leaseOwner: r.lease_owner,
    cancelRequested: r.cancel_requested_at !== null,
    error: r.error,
  }
}

/**
 * Asks for a job to stop. Returns what happened: `cancelled` (it was queued: cancelled now, no runner will
 * see it), `requested` (it is running somewhere: that runner aborts it), or `finished` (too late, or no job).
 */
export async function requestJobCancel(
  store: Store,
  id: string,
): Promise<'cancelled' | 'requested' | 'finished'> {
  const [row] = await store.query<{ status: JobStatus }>(
    `update jobs
        set cancel_requested_at = coalesce(cancel_requested_at, now()),
            status = case when status = 'queued' then 'cancelled' else status end,
            finished_at = case when status = 'queued' then now() else finished_at end
      where id = $1 and status in ('queued', 'running')
      returning status`,
    [id],
  )
  if (!row) return 'finished'
  if (row.status === 'cancelled') return 'cancelled'
  await store.notify(JOBS_CHANNEL, `cancel:${id}`).catch(() => {}) // the heartbeat notices anyway
  return 'requested'
}

interface ActiveJob {
  job: ClaimedJob
  controller: AbortController
  done: Promise<void>
  /** The handler returned: the heartbeat leaves the job alone while its end is recorded. */
  finishing: boolean
}

let instanceCounter = 0

/** Runs the jobs of one kind on this instance. See the module header. */
export class JobRunner<P = any, C = any> {
  readonly instanceId: string
  private readonly kind: string
  private readonly concurrency: number
  private readonly handler: JobHandler<P, C>
  private readonly leaseMs: number
  private readonly heartbeatMs: number
  private readonly pollMs: number
  private readonly stopTimeoutMs: number
  private readonly active = new Map<string, ActiveJob>()
  private timers: ReturnType<typeof setInterval>[] = []
  private unlisten?: () => Promise<void>
  private started = false
  private stopped = false
  private filling = false
  private refill = false

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    opts: JobRunnerOptions<P, C>,
  ) {
    this.kind = opts.kind
    this.concurrency = opts.concurrency
    this.handler = opts.handler
    this.leaseMs = opts.leaseMs ?? 30_000
    this.heartbeatMs = opts.heartbeatMs ?? Math.max(50, Math.floor(this.leaseMs / 3))
    this.pollMs = opts.pollMs ?? Math.min(5000, Math.max(50, Math.floor(this.leaseMs / 2)))
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 5000
    this.instanceId =
      opts.instanceId ??
      `${hostname()}:${process.pid}:${++instanceCounter}:${Math.random().toString(36).slice(2, 8)}`
  }

  /** Ids of the jobs running here now. */
  get running(): string[] {
    return [...this.active.keys()]
  }

  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    this.unlisten = await this.store.listen(
      JOBS_CHANNEL,
      (payload) => this.onDoorbell(payload),
      () => void this.fill(), // first listen and every reconnect: catch up on what we missed
    )
    this.timers.push(
      setInterval(() => void this.fill(), this.pollMs),
      setInterval(() => void this.heartbeat(), this.heartbeatMs),
    )
    void this.fill()
  }

  /** Stops claiming, aborts running jobs with `shutdown` and waits for them to go back to the queue. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    await this.unlisten?.().catch(() => {})
    for (const a of this.active.values()) a.controller.abort(new JobAbort('shutdown'))
    const all = Promise.allSettled([...this.active.values()].map((a) => a.done))
    let timer: ReturnType<typeof setTimeout> | undefined
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), this.stopTimeoutMs)
      }),
    ])
    clearTimeout(timer)
    if (timedOut) {
      // A handler that ignores its signal must not keep the job hostage: hand it back to the queue.
      this.log.warn({ jobs: this.running, kind: this.kind }, 'jobs did not stop in time; releasing them')
      for (const a of this.active.values())
        await releaseJob(this.store, a.job.id, this.instanceId, a.job.epoch).catch(() => {})
    }
  }

  private onDoorbell(payload: string): void {
    if (payload === jobsDoorbell(this.kind)) void this.fill()
    else if (payload.startsWith('cancel:')) this.abort(payload.slice(7), 'cancelled')
  }

  private abort(id: string, reason: AbortReason): void {
    const active = this.active.get(id)
    if (active && !active.controller.signal.aborted) active.controller.abort(new JobAbort(reason))
  }

  /** Claims jobs until the runner is full or the queue is empty; concurrent calls coalesce. */
  private async fill(): Promise<void> {
    if (this.stopped) return
    if (this.filling) {
      this.refill = true
      return
    }
    this.filling = true
    try {
      do {
        this.refill = false
        while (!this.stopped && this.active.size < this.concurrency) {
          const free = this.concurrency - this.active.size
          const claimed = await claimJobs(this.store, this.kind, free, this.instanceId, this.leaseMs)
          if (this.stopped) {
            for (const job of claimed) await releaseJob(this.store, job.id, this.instanceId, job.epoch)
            return
          }
          for (const job of claimed) this.launch(job)
          if (claimed.length < free) break
        }
      } while (this.refill && !this.stopped)
    } catch (err) {
      this.log.warn({ err, kind: this.kind }, 'could not claim jobs; retrying at the next poll')
    } finally {
      this.filling = false
    }
  }

  private launch(job: ClaimedJob & { cancelRequested: boolean }): void {
    const controller = new AbortController()
    if (job.cancelRequested) controller.abort(new JobAbort('cancelled'))
    const { cancelRequested: _, ...claimed } = job
    const active = { job: claimed, controller, finishing: false } as ActiveJob
    recordJobClaimed(job.kind, job.attempts)
    this.active.set(job.id, active)
    active.done = this.execute(active).finally(() => {
      // This instance may have claimed the job again meanwhile (its own lease ran out): that attempt stays.
      if (this.active.get(job.id) === active) this.active.delete(job.id)
      void this.fill()
    })
  }

  private async execute(active: ActiveJob): Promise<void> {
    const { job, controller } = active
    const fence: Fence = {
      jobId: job.id,
      epoch: job.epoch,
      owner: this.instanceId,
      // Refused once, refused forever (epochs only grow): stop the model request, the test run, the handler.
      onFenced: () => {
        if (controller.signal.aborted) return
        this.log.warn({ job: job.id, epoch: job.epoch }, 'job taken over by another attempt; stopping')
        controller.abort(new JobAbort('lease_lost'))
      },
    }
    const ctx: JobContext<C> = {
      signal: controller.signal,
      instanceId: this.instanceId,
      fence,
      checkpoint: async (state) => {
        const rows = await this.store.query(
          `update jobs set checkpoint = $4::jsonb
            where id = $1 and lease_owner = $2 and lease_epoch = $3 and status = 'running' returning id`,
          [job.id, this.instanceId, job.epoch, JSON.stringify(state)],
        )
        if (rows.length === 0) {
          fence.onFenced?.()
          throw new LeaseLostError(job.id)
        }
      },
      fenced: (work) =>
        this.store.db.transaction(async (tx) => {
          await holdLease(tx, fence)
          return work(tx)
        }),
    }
    let outcome: JobOutcome
    try {
      outcome = (await this.handler(job as ClaimedJob<P, C>, ctx)) ?? { status: 'succeeded' }
    } catch (err) {
      const reason = abortReasonOf(controller.signal)
      if (err instanceof LeaseLostError || reason === 'lease_lost') outcome = { status: 'released' }
      else if (reason === 'shutdown') outcome = { status: 'released' }
      else if (reason === 'cancelled') outcome = { status: 'cancelled' }
      else {
        this.log.error({ err, job: job.id, kind: job.kind }, 'job failed')
        outcome = { status: 'failed', error: (err as Error)?.message ?? String(err) }
      }
    }
    recordJobOutcome(job.kind, outcome.status, job.createdAt)
    active.finishing = true
    try {
      if (abortReasonOf(controller.signal) === 'lease_lost') return // someone else's now
      if (outcome.status === 'released') {
        await releaseJob(this.store, job.id, this.instanceId, job.epoch)
        // Another instance may be idle: tell it there is work (unless we are the only one and stopping).
        await ringJobs(this.store, this.kind).catch(() => {})
      } else
        await finishJob(
          this.store,
          fence,
          outcome.status,
          outcome.status === 'failed' ? outcome.error : undefined,
        )
    } catch (err) {
      this.log.warn({ err, job: job.id }, 'could not record the end of a job; its lease will expire')
    }
  }

  /** Renews the leases of running jobs; notices cancellations and leases another instance took over. */
  private async heartbeat(): Promise<void> {
    if (this.active.size === 0 || this.stopped) return
    const held = [...this.active.values()].filter((a) => !a.finishing).map((a) => a.job)
    const ids = held.map((j) => j.id)
    if (ids.length === 0) return
    try {
      // Only this attempt's lease is renewed (epoch too: this instance may have claimed the job again since),
      // locking rows in id order as the event log's flush does, so the two never deadlock.
      const rows = await this.store.query<{ id: string; cancel_requested_at: Date | null }>(
        `update jobs set lease_expires_at = now() + $3::int * interval '1 millisecond'
          where id in (
            select j.id from jobs j
              join jsonb_to_recordset($2::jsonb) as mine(id text, epoch int)
                on mine.id = j.id and mine.epoch = j.lease_epoch
             where j.lease_owner = $1 and j.status = 'running'
             order by j.id
               for update of j)
          returning id, cancel_requested_at`,
        [this.instanceId, JSON.stringify(held.map((j) => ({ id: j.id, epoch: j.epoch }))), this.leaseMs],
      )
      const renewed = new Map(rows.map((r) => [r.id, r]))
      for (const id of ids) {
        const row = renewed.get(id)
        if (!row) {
          // Gone, finished, or taken over after our lease expired: stop without writing anything more.
          if (this.active.get(id)?.finishing === false) this.abort(id, 'lease_lost')
        } else if (row.cancel_requested_at) this.abort(id, 'cancelled')
      }
    } catch (err) {
      this.log.warn({ err, kind: this.kind }, 'lease heartbeat failed; retrying')
    }
  }
}
