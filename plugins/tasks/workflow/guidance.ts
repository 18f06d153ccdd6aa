import type { Gantry } from '../../../src/core/context.ts'
import type { Fence } from '../../../src/core/jobs.ts'

/**
 * Interventions come in as INTERVENTION_RECEIVED events (HTTP or WebSocket); each is applied once, then kept.
 * Guidance still unapplied when the task ends gets an INTERVENTION_NOT_APPLIED saying why.
 */
export class Guidance {
  private cursor = 0
  /** Received seqs already answered: by INTERVENTION_APPLIED or INTERVENTION_NOT_APPLIED. */
  private readonly handled = new Set<number>()
  readonly active: string[] = []

  constructor(
    private readonly gantry: Gantry,
    private readonly taskId: string,
    private readonly fence: Fence,
  ) {}

  /** What arrived since the last read and is not answered yet (after a restart, earlier answers count). */
  private async pending(): Promise<{ seq: number; guidance: string }[]> {
    const received: { seq: number; guidance: string }[] = []
    for (;;) {
      const page = await this.gantry.events.readSince(this.taskId, this.cursor, 1000)
      for (const e of page) {
        this.cursor = e.seq
        const data = (e.data ?? {}) as { guidance?: unknown; received_seq?: unknown }
        if (e.type === 'INTERVENTION_RECEIVED' && typeof data.guidance === 'string' && data.guidance.trim())
          received.push({ seq: e.seq, guidance: data.guidance.trim() })
        // After a restart, what was applied before stays in effect.
        if (e.type === 'INTERVENTION_APPLIED' && typeof data.received_seq === 'number') {
          if (!this.handled.has(data.received_seq) && typeof data.guidance === 'string')
            this.active.push(data.guidance)
          this.handled.add(data.received_seq)
        }
        if (e.type === 'INTERVENTION_NOT_APPLIED' && typeof data.received_seq === 'number')
          this.handled.add(data.received_seq)
      }
      if (page.length < 1000) break
    }
    return received.filter((r) => !this.handled.has(r.seq))
  }

  /** Reads what arrived since the last model call and marks it applied; returns all guidance in effect. */
  async beforeModelCall(step: string): Promise<string[]> {
    for (const r of await this.pending()) {
      this.handled.add(r.seq)
      this.active.push(r.guidance)
      await this.gantry.events.append(
        this.taskId,
        'INTERVENTION_APPLIED',
        { guidance: r.guidance, received_seq: r.seq, step },
        { fence: this.fence },
      )
    }
    return [...this.active]
  }

  /**
   * The task is ending: guidance that no model call will see is answered, with the reason. `before`: only what
   * arrived before that seq (the terminal event; what comes after it, the intervention route answers itself).
   */
  async notApplied(reason: string, before = Number.POSITIVE_INFINITY): Promise<void> {
    for (const r of await this.pending()) {
      if (r.seq > before) continue
      this.handled.add(r.seq)
      await this.gantry.events.append(
        this.taskId,
        'INTERVENTION_NOT_APPLIED',
        { guidance: r.guidance, received_seq: r.seq, reason },
        { fence: this.fence },
      )
    }
  }
}
