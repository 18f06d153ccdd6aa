// noVNC ships no types; the console uses this much of its RFB class.
declare module '@novnc/novnc' {
  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, url: string, options?: { credentials?: { password?: string } })
    scaleViewport: boolean
    resizeSession: boolean
    viewOnly: boolean
    disconnect(): void
  }
}
