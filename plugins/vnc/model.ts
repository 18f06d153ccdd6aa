import { t } from 'elysia'

export const MIN_WIDTH = 320
export const MAX_WIDTH = 7680
export const MIN_HEIGHT = 240
export const MAX_HEIGHT = 4320

export const VncState = t.Union(
  [
    t.Literal('stopped'),
    t.Literal('starting'),
    t.Literal('running'),
    t.Literal('failed'),
    t.Literal('unavailable'),
  ],
  { description: 'stopped, starting (or restarting after a crash), running, failed (gave up), unavailable' },
)

export const MissingBinary = t.Object({
  binary: t.String({ description: 'The executable that is not on PATH, e.g. Xvfb' }),
  package: t.String({ description: 'The Debian package that installs it, e.g. xvfb' }),
})

/** `GET /api/vnc/status`; password and URLs only for users with the desktop permission. */
export const VncStatus = t.Object(
  {
    state: VncState,
    display: t.Nullable(t.String({ description: 'The X display, e.g. ":1", while the desktop runs' })),
    width: t.Integer(),
    height: t.Integer(),
    view_only: t.Boolean({ description: 'x11vnc ignores viewers’ mouse and keyboard' }),
    viewer_url: t.Nullable(t.String({ description: 'The noVNC viewer (permitted users only)' })),
    websocket_url: t.Nullable(
      t.String({ description: 'The RFB-over-WebSocket bridge (permitted users only)' }),
    ),
    password: t.Optional(
      t.String({ description: 'The VNC password of this start (permitted users, while running)' }),
    ),
    started_at: t.Nullable(t.String({ format: 'date-time' })),
    restarts: t.Integer({ description: 'Crash restarts since the last connect' }),
    last_error: t.Nullable(t.String()),
    missing: t.Array(MissingBinary, { description: 'Binaries not installed, with the package to install' }),
    permitted: t.Boolean({ description: 'Whether the caller may view and drive the desktop' }),
    processes: t.Optional(
      t.Array(t.Object({ name: t.String(), pid: t.Integer() }), {
        description: 'The processes of the stack (permitted users only)',
      }),
    ),
    message: t.Optional(t.String()),
  },
  { description: 'The agent desktop' },
)

export const ConnectBody = t.Object(
  {
    width: t.Optional(
      // t.Number with multipleOf 1, not t.Integer: Elysia's t.Integer also accepts "1024" as a string.
      t.Number({
        multipleOf: 1,
        minimum: MIN_WIDTH,
        maximum: MAX_WIDTH,
        description: 'Screen width in pixels (1280)',
      }),
    ),
    height: t.Optional(
      t.Number({
        multipleOf: 1,
        minimum: MIN_HEIGHT,
        maximum: MAX_HEIGHT,
        description: 'Screen height in pixels (800)',
      }),
    ),
    view_only: t.Optional(t.Boolean({ description: 'Viewers may watch but not type or click (false)' })),
  },
  { additionalProperties: false, example: { width: 1280, height: 800, view_only: false } },
)
