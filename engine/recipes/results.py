"""Recent results' recipes and inputs, kept server-side in a bounded store.

A page or API session holds only the ids of its results; the recipes and the init images that their
scripts need stay here, least recently used evicted first, under a count and a byte budget. (Kept in
each session's state they cost megabytes per request, and a server keeps thousands of sessions.)
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

from PIL import Image

from engine.recipes.recipe import Recipe

_ID = re.compile(r"[0-9a-f]{32}")


def is_result_id(text: object) -> bool:
    """Whether `text` has the form of a result id (32 hex digits, as the result PNGs are named)."""
    return isinstance(text, str) and _ID.fullmatch(text) is not None


@dataclass(frozen=True)
class StoredResult:
    """One result's recipe, the init image its script reads, and other images it reads by file name."""

    recipe: Recipe
    init: Image.Image | None = None
    inputs: dict[str, Image.Image] = field(default_factory=dict)

    def images(self) -> list[Image.Image]:
        return [image for image in (self.init, *self.inputs.values()) if image is not None]


def image_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


class ResultStore:
    """id -> StoredResult, bounded by `max_entries` and by `max_bytes` of distinct images.

    Images shared by several results (one init for every cell of a sweep) are counted once. Putting
    the same recipe object again returns its id, so a handler that yields its results as they grow
    can store them all at every yield.
    """

    def __init__(self, max_entries: int = 2000, max_bytes: int = 512 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, StoredResult] = OrderedDict()
        self._ids_by_recipe: dict[int, str] = {}
        self._image_refs: dict[int, int] = {}  # id(image) -> results holding it
        self._by_digest: dict[str, str] = {}  # an init's content hash (its recipe's init_digest) -> newest result
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes of the distinct images held."""
        return self._bytes

    def put(
        self, recipe: Recipe | None, init: Image.Image | None = None, inputs: dict[str, Image.Image] | None = None
    ) -> str:
        """Keep a result; returns its id ("" for an entry with no recipe, which is not kept)."""
        if recipe is None:
            return ""
        with self._lock:
            known = self._ids_by_recipe.get(id(recipe))
            if known is not None and self._entries[known].recipe is recipe:
                self._entries.move_to_end(known)
                return known
            key = uuid.uuid4().hex
            entry = StoredResult(recipe, init, dict(inputs or {}))
            self._entries[key] = entry
            self._ids_by_recipe[id(recipe)] = key
            if init is not None and recipe.init_digest:
                self._by_digest[recipe.init_digest] = key
            for image in entry.images():
                self._image_refs[id(image)] = self._image_refs.get(id(image), 0) + 1
                if self._image_refs[id(image)] == 1:
                    self._bytes += image_bytes(image)
            while len(self._entries) > self.max_entries or (self._bytes > self.max_bytes and len(self._entries) > 1):
                self._evict_oldest()
            return key

    def get(self, key: object) -> StoredResult | None:
        """The result with this id, or None (unknown, malformed or evicted)."""
        if not isinstance(key, str):
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def init_by_digest(self, digest: object) -> Image.Image | None:
        """The init image whose content hash is `digest` (a recipe's `init_digest`), while a result made from it
        is kept; None otherwise. The image is the one the pipeline saw, so a recipe naming it replays exactly."""
        if not isinstance(digest, str):
            return None
        with self._lock:
            key = self._by_digest.get(digest)
            entry = self._entries.get(key) if key is not None else None
            return entry.init if entry is not None else None

    def _evict_oldest(self) -> None:
        key, entry = self._entries.popitem(last=False)
        if self._ids_by_recipe.get(id(entry.recipe)) == key:
            del self._ids_by_recipe[id(entry.recipe)]
        digest = entry.recipe.init_digest
        if digest and self._by_digest.get(digest) == key:
            del self._by_digest[digest]
        for image in entry.images():
            self._image_refs[id(image)] -= 1
            if self._image_refs[id(image)] == 0:
                del self._image_refs[id(image)]
                self._bytes -= image_bytes(image)
