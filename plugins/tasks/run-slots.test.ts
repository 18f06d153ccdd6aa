import { describe, expect, test } from 'bun:test'
import { RunSlots } from './run-slots.ts'

/** A run that stays in its slot until released by the test. */
function held() {
  let release!: () => void
  const done = new Promise<void>((r) => {
    release = r
  })
  return { work: () => done, release }
}

describe('run slots', () => {
  test('at most `size` runs at once; the rest start oldest first as slots free', async () => {
    const slots = new RunSlots(2)
    const started: number[] = []
    const runs = [0, 1, 2, 3].map(() => held())
    const finished = runs.map((run, i) =>
      slots.use(async () => {
        started.push(i)
        await run.work()
      }),
    )
    await Promise.resolve()
    expect(started).toEqual([0, 1])
    expect(slots.queued).toBe(2)
    runs[1]!.release()
    await finished[1]
    await Promise.resolve()
    expect(started).toEqual([0, 1, 2])
    runs[0]!.release()
    await finished[0]
    await Promise.resolve()
    expect(started).toEqual([0, 1, 2, 3])
    runs[2]!.release()
    runs[3]!.release()
    await Promise.all(finished)
    expect(slots.queued).toBe(0)
  })

  test('a run aborted while waiting leaves the line at once and never runs; a failed run frees its slot', async () => {
    const slots = new RunSlots(1)
    const first = held()
    const running = slots.use(first.work)
    const abort = new AbortController()
    let ranAborted = false
    const waiting = slots.use(async () => {
      ranAborted = true
    }, abort.signal)
    abort.abort(new Error('task cancelled'))
    await expect(waiting).rejects.toThrow('task cancelled')
    expect(slots.queued).toBe(0)
    first.release()
    await running
    await expect(
      slots.use(async () => {
        throw new Error('tests crashed')
      }),
    ).rejects.toThrow('tests crashed')
    expect(await slots.use(async () => 'next')).toBe('next')
    expect(ranAborted).toBe(false)
  })

  test('a size that is not a positive integer is refused', () => {
    expect(() => new RunSlots(0)).toThrow(RangeError)
    expect(() => new RunSlots(1.5)).toThrow(RangeError)
  })
})
