// The production log path (stdout that is not a terminal): lines gathered into few writes, none lost or reordered.
import { describe, expect, test } from 'bun:test'
import { closeSync, openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir, waitFor } from '../../test/helpers.ts'
import { LineWriter } from './logger.ts'

const lines = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => `{"n":${from + i},"msg":"ü ${'x'.repeat(i % 200)}"}\n`)

describe('LineWriter', () => {
  test('a lone line is written within a few milliseconds, without another write to push it', async () => {
    const file = join(tempDir('gantry-log-'), 'out.log')
    const fd = openSync(file, 'w')
    try {
      const writer = new LineWriter(fd)
      writer.write('{"msg":"alone"}\n')
      expect(readFileSync(file, 'utf8')).toBe('') // gathered, not written synchronously
      await waitFor(() => readFileSync(file, 'utf8') === '{"msg":"alone"}\n', 2_000, 'the lone line')
    } finally {
      closeSync(fd)
    }
  })

  test('bursts far above the flush size arrive whole and in order; flushSync writes what still waits', async () => {
    const file = join(tempDir('gantry-log-'), 'out.log')
    const fd = openSync(file, 'w')
    try {
      const writer = new LineWriter(fd)
      const first = lines(20_000)
      for (const line of first) expect(writer.write(line)).toBe(true)
      await waitFor(() => readFileSync(file, 'utf8') === first.join(''), 5_000, 'the burst')
      const second = lines(500, 20_000)
      for (const line of second) writer.write(line)
      writer.flushSync()
      expect(readFileSync(file, 'utf8')).toBe(first.join('') + second.join(''))
      expect(writer.dropped).toBe(0)
    } finally {
      closeSync(fd)
    }
  })
})
