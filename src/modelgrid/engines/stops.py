"""Incremental text assembly for streamed generation: whole UTF-8 characters, no stop leaks.

``TextAssembler`` takes the raw bytes of each generated token and returns the text that is safe
to emit now: complete UTF-8 characters only, holding back any tail that could be the beginning
of a stop string (so a stop sequence spanning several tokens or chunks is never emitted).
Semantics follow the OpenAI reference for ``stop``: the returned text does not contain the stop
sequence, and generation ends at its first occurrence.
"""

from __future__ import annotations

import codecs


class TextAssembler:
    """Turns token bytes into emit-safe text.

    Args:
        stop: Stop strings (non-empty).

    Use ``feed(token_bytes)`` per token; it returns ``(text_to_emit, stopped)``. When
    ``stopped`` is true the generation must end, ``text_to_emit`` is the final text before
    the stop string and ``matched`` is the stop string that was hit (the one occurring first;
    of those starting there, the first listed). At the natural end call ``flush()`` for any
    held-back text.
    """

    __slots__ = ("_decoder", "_max_stop", "_pending", "_stop", "matched")

    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = stop
        self._max_stop = max((len(s) for s in stop), default=0)
        self._pending = ""
        self.matched: str | None = None

    def feed(self, data: bytes) -> tuple[str, bool]:
        text = self._decoder.decode(data)
        if not self._stop:
            return text, False
        buf = self._pending + text
        found = _first_stop(buf, self._stop)
        if found is not None:
            self._pending = ""
            cut, self.matched = found
            return buf[:cut], True
        hold = _held_tail(buf, self._stop, self._max_stop)
        self._pending = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        """Everything still held back (an incomplete character becomes U+FFFD)."""
        tail = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        if self._stop:
            found = _first_stop(tail, self._stop)
            if found is not None:
                cut, self.matched = found
                return tail[:cut]
        return tail


def _first_stop(buf: str, stops: tuple[str, ...]) -> tuple[int, str] | None:
    """Where the earliest stop string in ``buf`` begins, and which one it is."""
    best: tuple[int, str] | None = None
    for s in stops:
        i = buf.find(s)
        if i != -1 and (best is None or i < best[0]):
            best = (i, s)
    return best


def _held_tail(buf: str, stops: tuple[str, ...], max_stop: int) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of some stop string."""
    limit = min(len(buf), max_stop - 1)
    for k in range(limit, 0, -1):
        tail = buf[-k:]
        if any(s.startswith(tail) for s in stops):
            return k
    return 0


__all__ = ["TextAssembler"]
