// Periodic refresh that pauses while the tab is hidden and never overlaps itself.

export class Poller {
  constructor(fn, ms) {
    this.fn = fn;
    this.ms = ms;
    this.timer = null;
    this.stopped = false;
    this.running = false;
    this.onVisible = () => {
      if (!document.hidden) this.now();
    };
    document.addEventListener("visibilitychange", this.onVisible);
  }

  start() {
    this.now();
    return this;
  }

  async now() {
    if (this.stopped || this.running) return;
    clearTimeout(this.timer);
    this.running = true;
    try {
      await this.fn();
    } catch (_) {
      // the view shows its own errors; a poll just tries again
    } finally {
      this.running = false;
      if (!this.stopped) this.timer = setTimeout(() => (document.hidden ? null : this.now()), this.ms);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisible);
  }
}
