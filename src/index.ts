import { networkInterfaces } from 'node:os'
import { ConfigError, loadConfig } from './config.ts'
import { DatabaseUnavailableError } from './core/db.ts'
import { PluginLoadError } from './core/loader.ts'
import { startGantry } from './server.ts'

/** Boot: read the config, start, print where to reach us, and stop gracefully on SIGINT/SIGTERM. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`gantry: ${err.message}\nSee .env.example for every variable and what it accepts.`)
      process.exit(2)
    }
    throw err
  }

  let running: Awaited<ReturnType<typeof startGantry>>
  try {
    running = await startGantry(config)
  } catch (err) {
    if (err instanceof DatabaseUnavailableError || err instanceof PluginLoadError) {
      console.error(`gantry: cannot start: ${err.message}`)
      process.exit(1)
    }
    if (
      (err as { code?: string }).code === 'EADDRINUSE' ||
      /EADDRINUSE|in use/i.test((err as Error).message)
    ) {
      console.error(
        `gantry: cannot start: port ${config.port} on ${config.host} is already in use (set PORT).`,
      )
      process.exit(1)
    }
    console.error('gantry: cannot start:', err)
    process.exit(1)
  }

  const port = running.server.port
  const lan =
    config.host === '0.0.0.0'
      ? Object.values(networkInterfaces())
          .flat()
          .filter((i) => i && i.family === 'IPv4' && !i.internal)
          .map((i) => `http://${i!.address}:${port}`)
      : []
  // The banner goes to stderr, outside the JSON log, so that the key never lands in log files or the log stream.
  const banner = [
    `Gantry ${running.gantry.version} is up: ${running.url}`,
    ...lan.map((u) => `  on your network: ${u}`),
  ]
  banner.push(`  API docs: ${running.url}/docs`)
  if (running.generatedAdminKey)
    banner.push(
      '',
      '  First start: an admin API key was generated. It is shown only this once:',
      `    ${running.generatedAdminKey}`,
      `  (also saved, readable only by you, in ${running.adminKeyFile})`,
      `  Try: curl -H "Authorization: Bearer ${running.generatedAdminKey}" ${running.url}/api/me`,
    )
  console.error(banner.join('\n'))

  let signals = 0
  const onSignal = async (signal: NodeJS.Signals) => {
    signals++
    if (signals > 1) {
      console.error(`gantry: second ${signal}; exiting now`)
      process.exit(signal === 'SIGINT' ? 130 : 143)
    }
    const { clean } = await running.stop()
    process.exit(clean ? 0 : 1)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

await main()
