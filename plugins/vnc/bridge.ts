import type { Closer, Gantry } from '../../src/core/context.ts'
import type { SocketHandler, SocketPeer } from '../../src/core/runtime.ts'
import { connectTcp, type TcpConnection } from './runtime.ts'
import { desktopOf } from './service.ts'

/** The runtime seam's socket peer: the same object for the whole life of one connection. */
type RawSocket = Pick<SocketPeer, 'send' | 'close'>

interface Link {
  tcp?: TcpConnection
  /** Frames the viewer sent before the TCP connection to x11vnc was up. */
  early: Uint8Array[]
  closer: Closer
  closed: boolean
}

// WebSocket close codes: 1011 = server error, 1013 = try again later, 1003 = unsupported data.
const TRY_AGAIN = 1013

/**
 * Bridges one browser WebSocket to x11vnc's RFB port on 127.0.0.1, inside the server: bytes in, bytes out,
 * with backpressure both ways. Authentication and the Origin check happen before the upgrade (index.ts).
 */
export function createBridge() {
  const links = new WeakMap<object, Link>()

  const finish = (gantry: Gantry, raw: RawSocket, code: number, reason: string) => {
    const link = links.get(raw)
    if (!link || link.closed) return
    link.closed = true
    gantry.connections.delete(link.closer)
    link.tcp?.end()
    try {
      raw.close(code, reason)
    } catch {
      // already closed by the peer
    }
  }

  return {
    open(gantry: Gantry, raw: RawSocket): void {
      const desktop = desktopOf(gantry)
      const link: Link = {
        early: [],
        closed: false,
        closer: (code, reason) => finish(gantry, raw, code, reason),
      }
      links.set(raw, link)
      gantry.connections.add(link.closer)
      if (desktop.state !== 'running' || desktop.rfbPort === null) {
        finish(
          gantry,
          raw,
          TRY_AGAIN,
          `The desktop is ${desktop.state}; start it with POST /api/vnc/connect, then reconnect.`,
        )
        return
      }
      connectTcp(desktop.rfbPort, {
        data(chunk) {
          // The seam's send (Bun's codes): -1 = queued under backpressure, 0 = dropped; a dropped byte would
          // corrupt RFB.
          const sent = raw.send(chunk)
          if (sent === 0) finish(gantry, raw, 1011, 'The viewer could not keep up; reconnect.')
          else if (sent === -1) link.tcp?.pause()
        },
        close(error) {
          finish(
            gantry,
            raw,
            error ? 1011 : 1000,
            error ? `The desktop connection failed: ${error.message}` : 'The desktop closed the connection.',
          )
        },
      })
        .then((tcp) => {
          if (link.closed) {
            tcp.end()
            return
          }
          link.tcp = tcp
          for (const frame of link.early) tcp.write(frame)
          link.early = []
        })
        .catch((err: Error) => finish(gantry, raw, 1011, `The desktop is not reachable: ${err.message}`))
    },

    message(gantry: Gantry, raw: RawSocket, message: unknown): void {
      const link = links.get(raw)
      if (!link || link.closed) return
      if (!(message instanceof Uint8Array)) {
        finish(gantry, raw, 1003, 'The bridge carries binary RFB frames only.')
        return
      }
      // The runtime may reuse the buffer after this callback returns; keep a copy for anything queued.
      const frame = new Uint8Array(message)
      if (link.tcp) link.tcp.write(frame)
      else link.early.push(frame)
    },

    drain(raw: RawSocket): void {
      links.get(raw)?.tcp?.resume()
    },

    close(gantry: Gantry, raw: RawSocket): void {
      finish(gantry, raw, 1000, 'closed')
    },
  }
}

export type Bridge = ReturnType<typeof createBridge>

/** One bridged connection as the runtime seam's handler (the upgrade happens in index.ts). */
export class BridgeConnection implements SocketHandler {
  constructor(
    private readonly gantry: Gantry,
    private readonly bridge: Bridge,
  ) {}

  open(peer: SocketPeer): void {
    this.bridge.open(this.gantry, peer)
  }

  message(peer: SocketPeer, message: string | Uint8Array): void {
    this.bridge.message(this.gantry, peer, message)
  }

  drain(peer: SocketPeer): void {
    this.bridge.drain(peer)
  }

  close(peer: SocketPeer): void {
    this.bridge.close(this.gantry, peer)
  }
}
