import { defineConfig } from 'drizzle-kit'

// One schema, one set of migrations: the core tables and every first-party plugin's schema.ts.
// A dropped-in plugin ships its own plugins/<name>/migrations instead (see README, "Plugins").
export default defineConfig({
  dialect: 'postgresql',
  schema: ['./src/core/schema.ts', './plugins/*/schema.ts'],
  out: './migrations',
})
