/**
 * `npm run test:pg [-- files…]`: the suite (or the given files) against the local Postgres server instead of
 * the embedded database: each test server makes its own database on it and drops it afterwards.
 * TEST_DATABASE_URL picks another server (default: postgres on 127.0.0.1:5432, trust auth, as in CI).
 */
import { spawnSync } from 'node:child_process'

const url = process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres'
const run = spawnSync(process.execPath, ['test', '--timeout', '60000', ...process.argv.slice(2)], {
  stdio: 'inherit',
  env: { ...process.env, TEST_DATABASE_URL: url },
})
process.exit(run.status ?? 1)
