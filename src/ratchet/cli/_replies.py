"""Model replies printed as they stream: one line per reply, written piece by piece.

The pieces are a live view (``token`` events); the reply recorded when the call ends
(``model_call_finished``) is authoritative. So a reply that streamed whole is not
printed again, and one that did not (a provider that does not stream, a follower that
joined late, pieces of an attempt that was cut off) is printed whole as before.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from .. import events as ev

__all__ = ["ReplyPrinter"]


class ReplyPrinter:
    """Prints the text pieces of model replies inline, under a prefix per reply.

    Args:
        console: where to print; a pipe gets the pieces as they come too (flushed
            with each one), a line per reply once it ends.
        prefix: the start of a reply's line, from its first piece (e.g. the model
            line's ``model     turn 2: answer ``).
        line_started: called before a reply's first piece is printed (the follower
            hides its live status line: it would garble the partial line).
        line_ended: called once a reply's line is ended.
    """

    def __init__(
        self,
        console: Console,
        prefix: Callable[[ev.TokenDelta], str],
        *,
        line_started: Callable[[], None] | None = None,
        line_ended: Callable[[], None] | None = None,
    ) -> None:
        self._console = console
        self._prefix = prefix
        self._line_started = line_started
        self._line_ended = line_ended
        self._streaming: tuple[str, int] | None = None
        """The (call id, attempt) whose pieces are being printed."""
        self._text = ""
        """What that attempt streamed so far."""
        self._open = False
        """A reply's line is printed but not ended."""
        self._at_line_start = True

    def token(self, event: ev.TokenDelta) -> None:
        """Print a piece of reply text; tool-argument pieces are not printed."""
        if event.kind != "text" or not event.text:
            return
        if self._streaming != (event.call_id, event.attempt):
            self.end_line()
            self._streaming, self._text = (event.call_id, event.attempt), ""
        piece = event.text if self._text.strip() else event.text.lstrip()
        self._text += event.text
        if not piece:
            return  # the reply's leading whitespace: its line starts with its first word
        if not self._open:
            if self._line_started is not None:
                self._line_started()
            self._write(self._prefix(event))
            self._open = True
        self._write(piece)

    def superseded(self, event: ev.TokensSuperseded) -> None:
        """An attempt's pieces are void: end its line, say so, the next attempt starts over."""
        if self._streaming is None or self._streaming[0] != event.call_id:
            return  # none of its text was printed
        shown = bool(self._text.strip())
        self._forget()
        if shown:
            self._console.print(
                f"(attempt {event.attempt} was cut off; attempt {event.by_attempt} starts over)",
                style="dim",
                markup=False,
                highlight=False,
            )

    def finished(self, event: ev.ModelCallFinished) -> bool:
        """The call's reply is recorded: end its line. True when the text that streamed
        is the whole reply, so its recorded message needs no printing."""
        streamed = self._text if self._streaming and self._streaming[0] == event.call_id else ""
        self._forget()
        reply = event.response
        if reply is None or reply.tool_calls or not streamed.strip():
            return False
        return (reply.content or "").strip() == streamed.strip()

    def end_line(self) -> None:
        """End the open reply line, if any (before anything else is printed)."""
        if not self._open:
            return
        if not self._at_line_start:
            self._write("\n")
        self._open = False
        if self._line_ended is not None:
            self._line_ended()

    def _forget(self) -> None:
        self.end_line()
        self._streaming, self._text = None, ""

    def _write(self, text: str) -> None:
        # soft_wrap: rich would otherwise wrap each piece as if it began a line.
        self._console.print(
            text, end="", markup=False, highlight=False, emoji=False, soft_wrap=True
        )
        self._at_line_start = text.endswith("\n")
