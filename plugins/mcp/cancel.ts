/**
 * Cancellation across instances. A client cancels a call by POSTing `notifications/cancelled` — a new HTTP
 * request, which nginx may send to another instance than the one still answering the call, and which a fresh
 * (stateless) MCP server could not match to anything anyway. So every instance announces cancellations on a
 * Postgres channel, and the instance that holds the call stops it.
 */
import type { Gantry } from '../../src/core/context.ts'

const CHANNEL = 'gantry_mcp_cancel'
const MAX_KEY = 400

/** Who asked, from which MCP session, for which request: only the same caller can cancel a call. */
export const callKey = (userId: string, session: string | undefined, requestId: string | number) =>
  `${userId}|${session ?? '-'}|${JSON.stringify(requestId)}`

export class CancelBoard {
  private readonly waiting = new Map<string, Set<AbortController>>()
  private unlisten: (() => Promise<void> | void) | undefined

  constructor(private readonly gantry: Gantry) {}

  /** Calls being watched on this instance (tests check that a cancelled wait let go). */
  get watching(): number {
    let n = 0
    for (const set of this.waiting.values()) n += set.size
    return n
  }

  async start(): Promise<void> {
    this.unlisten = await this.gantry.store.listen(CHANNEL, (payload) => this.ring(payload))
  }

  async stop(): Promise<void> {
    await this.unlisten?.()
    this.unlisten = undefined
    for (const set of this.waiting.values()) for (const c of set) c.abort(new Error('server stopping'))
    this.waiting.clear()
  }

  /** A signal that aborts when the call `key` is cancelled from anywhere; `release` when the call ends. */
  watch(key: string): { signal: AbortSignal; release(): void } {
    const controller = new AbortController()
    let set = this.waiting.get(key)
    if (!set) {
      set = new Set()
      this.waiting.set(key, set)
    }
    set.add(controller)
    return {
      signal: controller.signal,
      release: () => {
        const current = this.waiting.get(key)
        current?.delete(controller)
        if (current && !current.size) this.waiting.delete(key)
      },
    }
  }

  /** Tells every instance (this one included, through the same channel) that the call `key` is cancelled. */
  async announce(key: string): Promise<void> {
    if (key.length > MAX_KEY) return
    await this.gantry.store.notify(CHANNEL, key).catch((err) => {
      this.gantry.log.warn({ err: (err as Error).message }, 'mcp: could not announce a cancellation')
    })
  }

  private ring(key: string): void {
    const set = this.waiting.get(key)
    if (!set) return
    for (const controller of set) controller.abort(new Error('cancelled by the client'))
  }
}
