import { describe, expect, test } from 'bun:test'
import { HttpError } from './errors.ts'
import { findTextFault, MAX_JSON_DEPTH, parseJsonText, parseSeq, scanJson, urlFault } from './input.ts'

const codeOf = (run: () => unknown) => {
  try {
    run()
  } catch (err) {
    return (err as HttpError).code
  }
  return 'accepted'
}

describe('scanJson', () => {
  test('depth counts arrays and objects outside strings, up to MAX_JSON_DEPTH', () => {
    const at = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`
    expect(codeOf(() => scanJson(at(MAX_JSON_DEPTH)))).toBe('accepted')
    expect(codeOf(() => scanJson(at(MAX_JSON_DEPTH + 1)))).toBe('too_deep')
    expect(codeOf(() => scanJson(`{"a":${'{"a":'.repeat(70)}1${'}'.repeat(71)}`))).toBe('too_deep')
    // Brackets in strings, and escaped quotes that do not end them, are text.
    expect(codeOf(() => scanJson(JSON.stringify({ s: `"${'['.repeat(500)}\\"[[` })))).toBe('accepted')
  })

  test('flags \\u escapes of NUL and surrogates only', () => {
    expect(scanJson('{"a":"plain \\n \\u00e9"}').suspectText).toBe(false)
    expect(scanJson('{"a":"\\u0000"}').suspectText).toBe(true)
    expect(scanJson('{"a":"\\uD83D\\uDE00"}').suspectText).toBe(true)
    expect(scanJson('{"a":"\\\\u0000"}').suspectText).toBe(false)
  })
})

describe('parseJsonText', () => {
  test('a pair of surrogates is Unicode; a lone one or NUL is refused with its path', () => {
    expect(parseJsonText('{"a":["\\ud83d\\ude00"]}')).toEqual({ a: ['😀'] })
    try {
      parseJsonText('{"a":[1,{"b":"x\\ud800"}]}')
      throw new Error('accepted')
    } catch (err) {
      expect(err).toBeInstanceOf(HttpError)
      expect((err as HttpError).details).toEqual([
        { path: 'body/a/1/b', message: 'a lone surrogate is not valid Unicode text' },
      ])
    }
    expect(codeOf(() => parseJsonText('{"a":"\\u0000"}'))).toBe('validation_failed')
    expect(codeOf(() => parseJsonText('{"a":'))).toBe('invalid_json')
  })

  test('findTextFault stops at MAX_JSON_DEPTH for values parsed elsewhere', () => {
    let deep: unknown = 'x'
    for (let i = 0; i < 10_000; i++) deep = [deep]
    expect(codeOf(() => findTextFault(deep, 'frame'))).toBe('too_deep')
  })
})

describe('urlFault', () => {
  test('NUL and broken escapes, in the path or a query parameter', () => {
    expect(urlFault('http://h/tasks/abc?limit=5')).toBeUndefined()
    expect(urlFault('http://h/tasks/caf%C3%A9')).toBeUndefined()
    expect((urlFault('http://h/tasks/a%00b') as HttpError).details).toEqual([
      { path: 'path', message: 'NUL characters (\\u0000) are not allowed in text' },
    ])
    expect((urlFault('http://h/tasks?status=a%00') as HttpError).details).toMatchObject([
      { path: 'query/status' },
    ])
    expect(urlFault('http://h/tasks?q=%ED%A0%80')?.status).toBe(400)
    expect(urlFault('http://h/tasks?q=100%')?.status).toBe(400)
  })
})

describe('parseSeq', () => {
  test('digits only; absent is 0', () => {
    expect(parseSeq(null)).toBe(0)
    expect(parseSeq(undefined)).toBe(0)
    expect(parseSeq('0')).toBe(0)
    expect(parseSeq('42')).toBe(42)
    for (const bad of ['', '1.5', '0x10', '1e1', '1e23', '-1', '+1', ' 1', '1 ', 'NaN', '9'.repeat(16)])
      expect(codeOf(() => parseSeq(bad))).toBe('validation_failed')
  })
})
