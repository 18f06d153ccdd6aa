import { describe, expect, test } from 'bun:test'
import { ConfigError, loadConfig } from './config.ts'

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

describe('config', () => {
  test('defaults match the design', () => {
    const c = loadConfig({})
    expect(c.port).toBe(9876)
    expect(c.host).toBe('0.0.0.0')
    expect(c.databaseUrl).toBeUndefined()
    expect(c.dataDir.endsWith('/data')).toBe(true)
    expect(c.ollamaHost).toBe('http://127.0.0.1:11434')
    expect(c.taskConcurrency).toBe(4)
    expect(c.heartbeatIntervalMs).toBe(30_000)
    expect(c.codeExecution).toBe('sandbox')
    expect(c.sessionTtlDays).toBe(30)
  })

  test('parses lists, URLs and numbers', () => {
    const c = loadConfig({
      PORT: '8080',
      PLUGINS_DISABLED: 'vnc, sessions',
      CORS_ORIGINS: 'https://a.lan:8443,http://b.lan',
      OLLAMA_HOST: 'gpu-box:11434',
      DATABASE_URL: 'postgresql://u:p@db:5432/gantry',
      LOG_LEVEL: 'DEBUG',
    })
    expect(c.port).toBe(8080)
    expect(c.pluginsDisabled).toEqual(['vnc', 'sessions'])
    expect(c.corsOrigins).toEqual(['https://a.lan:8443', 'http://b.lan'])
    expect(c.ollamaHost).toBe('http://gpu-box:11434')
    expect(c.databaseUrl).toBe('postgresql://u:p@db:5432/gantry')
    expect(c.logLevel).toBe('debug')
  })

  test.each([
    ['PORT', '70000', 'an integer from 0 to 65535'],
    ['PORT', 'eighty', 'an integer from 0 to 65535'],
    ['DATABASE_URL', 'mysql://x@y/z', 'postgres://'],
    ['DATABASE_URL', 'not a url', 'postgres://'],
    ['OLLAMA_HOST', 'ftp://x', 'http(s) URL'],
    ['LOG_LEVEL', 'loud', 'one of fatal, error'],
    ['TASK_CONCURRENCY', '0', 'an integer from 1'],
    ['HEARTBEAT_INTERVAL_MS', '10', 'an integer from 100'],
    ['CORS_ORIGINS', 'not-an-origin', 'comma list of origins'],
    ['ADMIN_API_KEY', 'short', 'at least 16 characters'],
    ['CODE_EXECUTION', 'yolo', 'one of sandbox, unsandboxed, off'],
  ])('%s=%s is rejected naming the variable', (name, value, accepted) => {
    const problems = problemsOf({ [name]: value })
    expect(problems).toHaveLength(1)
    expect(problems[0]).toContain(name)
    expect(problems[0]).toContain(accepted)
  })

  test('every invalid variable is reported at once', () => {
    expect(problemsOf({ PORT: '-1', LOG_LEVEL: 'x', TASK_CONCURRENCY: 'many' })).toHaveLength(3)
  })
})
