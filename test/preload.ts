import { afterAll } from 'bun:test'

// Tests build their own config; a developer's shell settings must not leak into them.
for (const name of [
  'PORT',
  'HOST',
  'DATA_DIR',
  'ADMIN_API_KEY',
  'PLUGINS_DISABLED',
  'PLUGINS_DIR',
  'OLLAMA_HOST',
])
  delete process.env[name]

// When the tests are done: remove the temporary folders they made (imported late, so the lines above run first).
afterAll(async () => (await import('./helpers.ts')).removeTempDirs())
