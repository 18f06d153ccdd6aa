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
