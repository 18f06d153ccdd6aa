import { describe, expect, test } from 'bun:test'
import type { Message } from 'ollama'
import { estimateTokens, promptBudget, trimHistory } from './history.ts'

const turn = (role: string, chars: number, tag = ''): Message => ({
  role,
  content: `${tag}${'x'.repeat(chars)}`,
})

describe('trimHistory', () => {
  test('keeps everything when it fits', () => {
    const messages = [turn('system', 30), turn('user', 30), turn('assistant', 30), turn('user', 30)]
    expect(trimHistory(messages, 1000)).toEqual({ messages, dropped: 0 })
  })

  test('drops the oldest turns first, keeping the system prompt and the latest turns', () => {
    const messages = [
      turn('system', 300, 'S'),
      ...Array.from({ length: 20 }, (_, i) => turn(i % 2 ? 'assistant' : 'user', 300, `T${i}:`)),
    ]
    const budget = estimateTokens(messages[0]!) + 5 * estimateTokens(messages[1]!) + 10
    const { messages: kept, dropped } = trimHistory(messages, budget)
    expect(kept[0]!.content).toStartWith('S')
    expect(kept.slice(1).map((m) => m.content.split(':')[0])).toEqual(['T15', 'T16', 'T17', 'T18', 'T19'])
    expect(dropped).toBe(15)
  })

  test('the newest message stays even alone over budget', () => {
    const messages = [turn('system', 30), turn('user', 30), turn('user', 100_000)]
    const { messages: kept } = trimHistory(messages, 100)
    expect(kept.map((m) => m.content.length)).toEqual([30, 100_000])
  })

  test('a tool result never starts the kept history without its call', () => {
    const messages: Message[] = [
      turn('system', 10),
      turn('user', 3000),
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'a', arguments: {} } }] },
      turn('tool', 200),
      turn('assistant', 30),
      turn('user', 30),
    ]
    const budget = estimateTokens(messages[0]!) + estimateTokens(messages[3]!) + 40
    const { messages: kept } = trimHistory(messages, budget)
    expect(kept[1]!.role).not.toBe('tool')
  })

  test('the answer gets room: num_predict, else a quarter of the window (at most 2048)', () => {
    expect(promptBudget(4096)).toBe(3072)
    expect(promptBudget(131072)).toBe(131072 - 2048)
    expect(promptBudget(4096, 1000)).toBe(3096)
  })
})
