"""Tag completion while typing a caption: the dataset's own tags, most used first.

Pure functions so the editor widget stays thin; the vocabulary is built once per scan and each
keystroke costs a bisect plus a scan over the tags sharing the typed prefix.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping


def typed_fragment(before_cursor: str, separator: str = ",") -> str:
    """The part of the tag being typed: text after the last separator, leading spaces dropped."""
    sep = separator or ","
    return before_cursor.rsplit(sep, 1)[-1].lstrip()


class TagVocabulary:
    """Tags with their caption counts; completes a prefix to the most used tag that extends it."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = dict(counts)
        self._folded = sorted((tag.casefold(), tag) for tag in self.counts)
        self._keys = [folded for folded, _ in self._folded]

    def __len__(self) -> int:
        return len(self.counts)

    def candidates(self, fragment: str, limit: int = 10) -> list[str]:
        """Tags starting with ``fragment`` (ignoring case), most used first, ties alphabetical."""
        if not fragment:
            return []
        key = fragment.casefold()
        lo = bisect.bisect_left(self._keys, key)
        hi = bisect.bisect_left(self._keys, key + "\U0010ffff")
        found = [tag for _, tag in self._folded[lo:hi] if len(tag) > len(fragment)]
        found.sort(key=lambda t: (-self.counts[t], t))
        return found[:limit]

    def completion(self, fragment: str, present: Collection[str] = ()) -> str:
        """What to append to ``fragment`` to finish the best tag ("" when none fits).

        Only tags that continue exactly what was typed (same case) qualify, since the suggestion is
        appended after the cursor and cannot rewrite the typed letters; tags already ``present`` in
        the caption are skipped, since a caption needs each tag once.
        """
        for tag in self.candidates(fragment, limit=50):
            if tag.startswith(fragment) and tag not in present:
                return tag[len(fragment):]
        return ""
