/**
 * The app's type with its first-party plugins, for a typed Eden treaty client. Plugins load at run time from
 * their folders, so the runtime app cannot carry their route types; this file composes the same instances as
 * types only (nothing here runs).
 * @example
 *   import { treaty } from '@elysiajs/eden'
 *   import type { App } from 'gantry/src/app-type.ts'
 *   const api = treaty<App>('http://gpu-box:9876', { headers: { authorization: `Bearer ${key}` } })
 *   const { data } = await api.tasks.post({ prompt: 'Build an email validator' })
 */
import type logsStream from '../plugins/logs-stream/index.ts'
import type sessions from '../plugins/sessions/index.ts'
import type tasks from '../plugins/tasks/index.ts'
import type vnc from '../plugins/vnc/index.ts'
import type websocket from '../plugins/websocket/index.ts'
import type { CoreApp } from './app.ts'

declare const core: CoreApp
declare const plugins: {
  websocket: typeof websocket
  logsStream: typeof logsStream
  tasks: typeof tasks
  sessions: typeof sessions
  vnc: typeof vnc
}

function typedApp() {
  return core
    .use(plugins.websocket)
    .use(plugins.logsStream)
    .use(plugins.tasks)
    .use(plugins.sessions)
    .use(plugins.vnc)
}

export type App = ReturnType<typeof typedApp>
