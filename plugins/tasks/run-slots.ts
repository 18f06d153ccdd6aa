/**
 * How many generated-code runs (`bun test`, `tsc`) one instance lets go at once. Each is a CPU-heavy process
 * of its own: 32 tasks testing at the same moment on a 2-core machine were 64 of them, taking the cores from
 * the server (POST /tasks at p50 0.8 s) and from one another. The rest wait their turn, oldest first; their
 * wall clock starts when they run, and a cancelled task leaves the line at once.
 */
import { availableParallelism } from 'node:os'

/** One slot per core: the runs then use the machine fully and never queue up on the CPU themselves. */
export const defaultRunSlots = (): number => Math.max(1, availableParallelism())

export class RunSlots {
  private free: number
  private readonly waiting = new Set<{ grant: () => void }>()

  constructor(readonly size: number = defaultRunSlots()) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`run slots must be ≥ 1 (got ${size})`)
    this.free = size
  }

  /** Runs waiting for a slot now. */
  get queued(): number {
    return this.waiting.size
  }

  /** Runs `work` in a slot; rejects with the signal's reason if it is aborted while waiting. */
  async use<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(signal)
    try {
      return await work()
    } finally {
      this.release()
    }
  }

  private acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    if (this.free > 0 && this.waiting.size === 0) {
      this.free--
      return Promise.resolve()
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.waiting.delete(entry)
        reject(signal!.reason)
      }
      const entry = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        },
      }
      this.waiting.add(entry)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private release(): void {
    // Hand the slot straight to the oldest waiter (a Set keeps insertion order), or give it back.
    const next = this.waiting.values().next()
    if (next.done) this.free++
    else {
      this.waiting.delete(next.value)
      next.value.grant()
    }
  }
}
