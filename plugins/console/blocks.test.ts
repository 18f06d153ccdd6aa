import { expect, test } from 'bun:test'
import { stableEnd } from './client/src/blocks.ts'

test('finished blocks end at the last blank line outside a code fence', () => {
  expect(stableEnd('one paragraph, still going', 0)).toBe(0)
  const text = 'First.\n\nSecond.\n\nThird, still'
  expect(text.slice(0, stableEnd(text, 0))).toBe('First.\n\nSecond.\n\n')
  // A blank line inside a fence is part of the code block, which is not finished until the fence closes.
  const fenced = 'Intro.\n\n```ts\nconst a = 1\n\nconst b = 2\n'
  expect(fenced.slice(0, stableEnd(fenced, 0))).toBe('Intro.\n\n')
  const closed = `${fenced}\`\`\`\n\nAfter`
  expect(closed.slice(0, stableEnd(closed, 0))).toBe(`${fenced}\`\`\`\n\n`)
  // Only blank lines after what is already done count.
  expect(stableEnd(text, 8)).toBe(17)
  expect(stableEnd(text, 17)).toBe(17)
})
